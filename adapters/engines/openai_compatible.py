"""The `openai` reply engine: any OpenAI-compatible chat-completions server answers for a bot.

The bot's `engine_config` names the upstream (`base_url`, `model`, ...) and, through
`api_key_env`, the *environment variable* that holds its key. Only variables the operator offers
(`CHATBOTS_UPSTREAM_KEYS`) qualify, and the engine holds just those, read once at start: a bot
can never make the server send it another secret of its environment. The key is sent in the
`Authorization` header and nowhere else; what an upstream says goes through a redactor and into
the log only, because upstreams echo keys ("Incorrect API key provided: sk-...") and an error
page could be an internal service's.

Failure policy, in one place:
- Nothing waits unbounded: connecting, the first streamed event, each gap between events and
  the whole reply each have a deadline (`asyncio.timeout_at` around every await that reads from
  the network, never around a `yield`, so a slow consumer is never cancelled by our clock). The
  waits count events that carry data, not bytes: keep-alive comments do not extend them.
- 408/429/5xx answers and connection failures are retried with exponential backoff, honouring
  `Retry-After` up to a cap, but only before the upstream has streamed anything: once a reply
  has started, a retry could repeat text the caller has already shown.
- Timeouts become `UpstreamTimeout` (504); everything else becomes `UpstreamFailed` (502), with a
  short `detail` in our own words that carries the upstream status where there is one, and never
  the upstream's text or the low-level error (which would tell one network target from another).
  The client refuses private and local addresses (`adapters.outbound`) with one fixed detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from adapters.engines.openai_config import (
    DEFAULT_CONTEXT_ENTRIES,
    MAX_MODEL_NAME_LENGTH,
    validate_openai_config,
)
from adapters.engines.redaction import Redactor, describe_error_body, describe_error_object
from adapters.engines.sse import EventStreamDecoder, StreamEvent
from adapters.outbound import OutboundAddressRefused, guarded_client
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed, UpstreamTimeout
from application.ports import (
    KnowledgeRetriever,
    ReplyChunk,
    ReplyDone,
    ReplyEvent,
    ReplyRequest,
    RetrievedEntry,
)
from domain.bots import Bot

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "openai"

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 60.0
DEFAULT_TOTAL_TIMEOUT: Final = 300.0

# The most we read of a non-streamed answer, and of an error body (we only want its message).
MAX_JSON_ANSWER_BYTES: Final = 4 * 1024 * 1024
MAX_ERROR_BODY_BYTES: Final = 16 * 1024

ADDRESS_REFUSED: Final = "the model upstream's address is not allowed (private or local network)"
_RETRYABLE_STATUSES: Final = frozenset({408, 429})


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UpstreamSettings:
    """One bot's validated `engine_config`, with the waits it implies."""

    base_url: str
    model: str
    temperature: float | None
    max_tokens: int | None
    api_key_env: str | None
    context_entries: int
    wait_override: float | None

    @classmethod
    def of(
        cls, engine_config: Mapping[str, Any], offered_keys: Collection[str]
    ) -> _UpstreamSettings:
        # Checked again at call time: a bot stored before a rule existed must obey it too.
        try:
            config = validate_openai_config(engine_config, offered_keys=offered_keys)
        except ValueError as error:
            raise UpstreamFailed(f"the bot's openai engine_config is invalid: {error}") from None
        return cls(
            base_url=config["base_url"],
            model=config["model"],
            temperature=config.get("temperature"),
            max_tokens=config.get("max_tokens"),
            api_key_env=config.get("api_key_env"),
            context_entries=config.get("context_entries", DEFAULT_CONTEXT_ENTRIES),
            wait_override=config.get("timeout_seconds"),
        )


# --- reading the reply ------------------------------------------------------------------------


def _token_usage(raw: object) -> dict[str, int] | None:
    if not isinstance(raw, Mapping):
        return None
    counts = {
        key: value
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(value := raw.get(key), int) and not isinstance(value, bool)
    }
    if "prompt_tokens" not in counts or "completion_tokens" not in counts:
        return None
    counts.setdefault("total_tokens", counts["prompt_tokens"] + counts["completion_tokens"])
    return counts


@dataclass
class _ReplyProgress:
    """What the stream has told us so far; decides whether its end was a proper one."""

    model: str
    redact: Redactor
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    done: bool = False

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    def take_event(self, event: StreamEvent) -> str:
        """Returns the text the event adds to the reply ('' for none)."""
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(event.data)
        except ValueError:
            raise UpstreamFailed(
                "the model upstream sent a malformed stream chunk (invalid JSON)"
            ) from None
        if not isinstance(chunk, Mapping):
            raise UpstreamFailed("the model upstream sent a malformed stream chunk (not an object)")
        if event.kind == "error" or chunk.get("error"):
            described = describe_error_object(chunk.get("error", chunk), self.redact)
            logger.warning("openai engine: the upstream's stream reported: %s", described)
            raise UpstreamFailed("the model upstream reported an error in the stream")
        return self.take_chunk(chunk, delta_key="delta")

    def take_chunk(self, chunk: Mapping[str, Any], *, delta_key: str) -> str:
        """Reads one `chat.completion.chunk` (delta) or `chat.completion` (message) object."""
        model = chunk.get("model")
        if isinstance(model, str) and 0 < len(model.strip()) <= MAX_MODEL_NAME_LENGTH:
            self.model = model.strip()  # it is stored with the reply: keep only a sane name
        if (usage := _token_usage(chunk.get("usage"))) is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise UpstreamFailed("the model upstream sent a malformed chunk (choices)")
        first = next(
            (c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0), None
        )
        if first is None:
            return ""
        if isinstance(reason := first.get("finish_reason"), str) and reason:
            self.finish_reason = reason
        delta = first.get(delta_key)
        if delta is None:
            return ""
        if not isinstance(delta, Mapping):
            raise UpstreamFailed(f"the model upstream sent a malformed chunk ({delta_key})")
        content = delta.get("content")
        if content is None:
            return ""
        if not isinstance(content, str):
            raise UpstreamFailed("the model upstream sent a malformed chunk (content)")
        return content


# --- the request we send --------------------------------------------------------------------------


def _system_message(system_prompt: str, entries: list[RetrievedEntry]) -> str:
    parts = [system_prompt.strip()] if system_prompt.strip() else []
    if entries:
        context = "\n\n".join(f"Q: {entry.question}\nA: {entry.answer}" for entry in entries)
        parts.append(
            "Knowledge that may help answer the user (use it where it is relevant):\n\n" + context
        )
    return "\n\n".join(parts)


def _chat_payload(
    request: ReplyRequest, settings: _UpstreamSettings, entries: list[RetrievedEntry]
) -> dict[str, Any]:
    """System prompt plus context, then the bounded history in order, then the new message."""
    messages: list[dict[str, str]] = []
    if system := _system_message(request.bot.system_prompt, entries):
        messages.append({"role": "system", "content": system})
    messages.extend(
        {"role": str(message.role), "content": message.content}
        for message in request.history
        if message.content
    )
    messages.append({"role": "user", "content": request.message})
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if settings.temperature is not None:
        payload["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        payload["max_tokens"] = settings.max_tokens
    return payload


def _request_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The wait an upstream asks for: OpenAI's `retry-after-ms`, else `Retry-After` (RFC 9110)."""
    if (millis := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            wait = float(millis) / 1000
            if math.isfinite(wait) and wait >= 0:
                return wait
    raw = headers.get("retry-after")
    if raw is None:
        return None
    with contextlib.suppress(ValueError):
        wait = float(raw)
        return wait if math.isfinite(wait) and wait >= 0 else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- the engine -----------------------------------------------------------------------------------


def build_http_client(outbound: OutboundPolicy | None = None) -> httpx.AsyncClient:
    """The one pooled HTTP client the composition root shares between all `openai` bots.

    It is the guarded client (`adapters.outbound`): base URLs are chosen by members, so only
    public addresses are reached unless `outbound`, the operator's allowances, says otherwise.

    Keep-alive connections save a TLS handshake per reply; the pool is bounded so a burst of
    chats cannot open unbounded sockets, and a request waiting for a pooled connection gives up
    after the connect timeout. The engine passes stricter per-request timeouts on top; these are
    the backstop. Redirects are not followed: an API that moved is a configuration error, and a
    redirect must never carry the `Authorization` header elsewhere. Proxy settings from the
    environment (`HTTPS_PROXY`, `NO_PROXY`) are honoured, as deployments behind one need.
    """
    return guarded_client(
        outbound or OutboundPolicy(),
        timeout=httpx.Timeout(
            DEFAULT_READ_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT, pool=DEFAULT_CONNECT_TIMEOUT
        ),
        limits=httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0
        ),
        headers={"User-Agent": "chatbots-openai-engine/0.1"},
    )


@dataclass(frozen=True)
class _CallPolicy:
    """How long to wait for what, and how often to try again; the same for every bot."""

    max_retries: int
    backoff_seconds: float
    max_retry_after_seconds: float
    connect_timeout: float
    first_byte_timeout: float
    read_timeout: float
    total_timeout: float

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.backoff_seconds < 0 or self.max_retry_after_seconds < 0:
            raise ValueError("backoff_seconds and max_retry_after_seconds must not be negative")
        waits = (self.connect_timeout, self.first_byte_timeout, self.read_timeout)
        if not all(math.isfinite(wait) and wait > 0 for wait in (*waits, self.total_timeout)):
            raise ValueError("every timeout must be a finite number of seconds greater than 0")


class OpenAICompatibleEngine:
    """Answers through an OpenAI-compatible `/chat/completions` endpoint, streaming.

    `client` is shared (connection pooling) and owned by the caller, who closes it. `retriever`
    supplies the knowledge entries sent as context; without one, only the system prompt is.
    `upstream_keys` maps the variable names the operator offers to their values, read once at
    start (`adapters.engines.upstream_keys`); a bot's `api_key_env` is looked up there and
    nowhere else, so without it no bot sends a key. Waits:
    `connect_timeout` to open a connection, `first_byte_timeout` from sending the request to the
    first streamed event (models may think a while), `read_timeout` between streamed events, and
    `total_timeout` for the whole reply including retries. A bot's `timeout_seconds` replaces the
    first-byte and between-chunks waits. `max_retries` retries follow the first attempt, after
    `backoff_seconds` doubled each time, or after `Retry-After` when the upstream asks for a
    wait of at most `max_retry_after_seconds` (asked for longer, we give up at once rather than
    keep the user waiting or call back sooner than allowed).
    """

    reads_history = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        retriever: KnowledgeRetriever | None = None,
        *,
        upstream_keys: Mapping[str, str] | None = None,
        key_offers: Collection[str] | None = None,
        max_retries: int = 2,
        backoff_seconds: float = 0.2,
        max_retry_after_seconds: float = 5.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        first_byte_timeout: float = DEFAULT_READ_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
    ) -> None:
        self._client = client
        self._retriever = retriever
        self._upstream_keys: Mapping[str, str] = dict(upstream_keys or {})
        # The operator's entries, with the hosts keys are bound to (upstream_keys.py).
        self._key_offers = tuple(key_offers if key_offers is not None else self._upstream_keys)
        self._policy = _CallPolicy(
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_retry_after_seconds=max_retry_after_seconds,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
        )

    def answers_without_io(self, bot: Bot) -> bool:
        return False  # every reply is a call to the upstream

    async def reply(self, request: ReplyRequest) -> AsyncGenerator[ReplyEvent, None]:
        """Streams the upstream's reply; raises UpstreamTimeout / UpstreamFailed, even mid-way.

        A caller that stops early should `aclose()` the generator (or use
        `contextlib.aclosing`): that returns the connection to the pool at once.
        """
        try:
            async with contextlib.aclosing(self._reply(request)) as events:
                async for event in events:
                    yield event
        except UpstreamFailed as failure:
            # The one log line per failure; `detail` is already redacted.
            logger.warning("openai engine, bot %s: %s", request.bot.id, failure.detail)
            raise

    async def _reply(self, request: ReplyRequest) -> AsyncGenerator[ReplyEvent, None]:
        settings = _UpstreamSettings.of(request.bot.engine_config, self._key_offers)
        api_key = self._api_key(settings)
        entries = await self._relevant_entries(request, settings)
        call = _UpstreamCall(
            client=self._client,
            policy=self._policy,
            settings=settings,
            redact=Redactor(api_key),
            deadline=asyncio.get_running_loop().time() + self._policy.total_timeout,
        )
        response, first_byte_deadline = await call.open_stream(
            _chat_payload(request, settings, entries), _request_headers(api_key)
        )
        progress = _ReplyProgress(model=settings.model, redact=call.redact)
        try:
            async with contextlib.aclosing(
                call.read_reply(response, first_byte_deadline, progress)
            ) as texts:
                async for text in texts:
                    yield ReplyChunk(text)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
        yield ReplyDone(
            {
                "engine": ENGINE_NAME,
                "model": progress.model,
                "confidence": 1.0,
                "fallback": False,
                "sources": [str(entry.entry_id) for entry in entries],
                "usage": progress.usage,
                "finish_reason": progress.finish_reason,
            }
        )

    def _api_key(self, settings: _UpstreamSettings) -> str | None:
        if settings.api_key_env is None:
            return None
        # _UpstreamSettings.of has refused names that are not offered.
        key = self._upstream_keys.get(settings.api_key_env, "").strip()
        if not key:
            raise UpstreamFailed(
                f"the environment variable {settings.api_key_env} (the bot's api_key_env) "
                "is not set, so the model upstream cannot be called"
            )
        return key

    async def _relevant_entries(
        self, request: ReplyRequest, settings: _UpstreamSettings
    ) -> list[RetrievedEntry]:
        if self._retriever is None or settings.context_entries == 0:
            return []
        found = await self._retriever.retrieve(
            request.bot, request.message, settings.context_entries
        )
        return found[: settings.context_entries]


@dataclass
class _ReadDeadline:
    """When the next read must have brought something. Only what counts as content moves it
    on (an event with data in a stream, any bytes of a plain body): keep-alives do not."""

    at: float
    started: bool = False

    def move_to(self, at: float) -> None:
        self.at = at
        self.started = True


@dataclass
class _UpstreamCall:
    """One reply's exchange with the upstream: attempts and retries, then reading the stream."""

    client: httpx.AsyncClient
    policy: _CallPolicy
    settings: _UpstreamSettings
    redact: Redactor
    deadline: float

    @property
    def first_byte_wait(self) -> float:
        return self.settings.wait_override or self.policy.first_byte_timeout

    @property
    def between_chunks_wait(self) -> float:
        return self.settings.wait_override or self.policy.read_timeout

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _httpx_timeouts(self) -> httpx.Timeout:
        # httpx's own timeouts back up the asyncio deadlines: they also bound connect and pool.
        wait = max(self.first_byte_wait, self.between_chunks_wait)
        return httpx.Timeout(
            wait, connect=self.policy.connect_timeout, pool=self.policy.connect_timeout
        )

    # -- before the first byte: attempts and retries --

    async def open_stream(
        self, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[httpx.Response, float]:
        """Sends the request until a 2xx answer starts; returns it with its first-byte deadline.

        Retries happen here only, before any reply text exists.
        """
        attempts = self.policy.max_retries + 1
        for attempt in range(1, attempts + 1):
            first_byte_deadline = min(self.deadline, self._now() + self.first_byte_wait)
            retry_after: float | None = None
            request = self.client.build_request(
                "POST",
                f"{self.settings.base_url}/chat/completions",
                json=payload,
                headers=headers,
                timeout=self._httpx_timeouts(),
            )
            try:
                async with asyncio.timeout_at(first_byte_deadline):
                    response = await self.client.send(request, stream=True)
            except OutboundAddressRefused as refused:
                logger.warning("openai engine: not connecting: %s", self.redact(str(refused)))
                raise UpstreamFailed(ADDRESS_REFUSED) from None
            except httpx.ConnectTimeout:
                raise UpstreamTimeout(
                    "the model upstream did not accept a connection within "
                    f"{self.policy.connect_timeout:g} s"
                ) from None
            except httpx.PoolTimeout:
                raise UpstreamTimeout(
                    "no connection to the model upstream became free within "
                    f"{self.policy.connect_timeout:g} s (too many replies at once)"
                ) from None
            except (TimeoutError, httpx.TimeoutException):
                raise self._missed_first_byte() from None
            except httpx.TransportError as error:
                # Nothing was answered, so the request may be sent again.
                failure = UpstreamFailed(self._transport_failure(error))
            else:
                if response.is_success:
                    return response, first_byte_deadline
                failure, retryable = await self._refusal(response, first_byte_deadline)
                if not retryable:
                    raise failure
                retry_after = _retry_after_seconds(response.headers)
            if attempt == attempts:
                if attempts > 1:
                    raise UpstreamFailed(f"{failure.detail} (after {attempts} attempts)")
                raise failure
            delay = self.policy.backoff_seconds * 2 ** (attempt - 1)
            if retry_after is not None:
                if retry_after > self.policy.max_retry_after_seconds:
                    raise UpstreamFailed(
                        f"{failure.detail}; it asked to be called again after {retry_after:g} s, "
                        "longer than this service waits"
                    )
                delay = max(delay, retry_after)
            if self._now() + delay >= self.deadline:
                raise failure
            logger.warning(
                "openai engine: %s; retrying in %.2f s (attempt %d of %d)",
                failure.detail,
                delay,
                attempt + 1,
                attempts,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _transport_failure(self, error: httpx.TransportError) -> str:
        # One detail for refused, reset, unresolvable and non-HTTP peers alike: telling them
        # apart would let a member map what answers where. The operator gets the reason.
        logger.warning(
            "openai engine: connecting to the upstream failed: %s: %s",
            type(error).__name__,
            self.redact(str(error)),
        )
        return "could not connect to the model upstream"

    async def _refusal(
        self, response: httpx.Response, deadline: float
    ) -> tuple[UpstreamFailed, bool]:
        """Reads (a bounded part of) an error answer; says whether it is worth retrying."""
        status = response.status_code
        body = await self._bounded_body(response, MAX_ERROR_BODY_BYTES, deadline, strict=False)
        described = describe_error_body(body, response.headers.get("content-type", ""), self.redact)
        if described:
            logger.warning("openai engine: the upstream answered HTTP %d: %s", status, described)
        retryable = status in _RETRYABLE_STATUSES or status >= 500
        if retryable:
            detail = f"the model upstream answered HTTP {status}"
        elif status in (401, 403):
            check = (
                f"check the key in {self.settings.api_key_env}"
                if self.settings.api_key_env
                else "no key was sent: set api_key_env"
            )
            detail = f"the model upstream refused the credentials: HTTP {status}; {check}"
        else:
            detail = f"the model upstream refused the request: HTTP {status}"
        return UpstreamFailed(detail), retryable

    # -- after the first byte: reading, never retrying --

    async def read_reply(
        self, response: httpx.Response, first_byte_deadline: float, progress: _ReplyProgress
    ) -> AsyncGenerator[str, None]:
        """The reply's text pieces; raises when the stream breaks, stalls or ends too early."""
        content_type = response.headers.get("content-type", "").lower()
        if content_type.startswith("application/json"):
            # Some servers ignore `stream: true`; a whole chat.completion is still an answer.
            body = await self._bounded_body(
                response, MAX_JSON_ANSWER_BYTES, first_byte_deadline, strict=True
            )
            if text := self._whole_answer(body, progress):
                yield text
            return
        decoder = EventStreamDecoder()
        wait = _ReadDeadline(first_byte_deadline)
        async with contextlib.aclosing(self._timed_chunks(response, wait)) as chunks:
            async for chunk in chunks:
                for event in decoder.feed(chunk):
                    wait.move_to(self._now() + self.between_chunks_wait)
                    if text := progress.take_event(event):
                        yield text
                    if progress.done:
                        return
        for event in decoder.finish():
            if text := progress.take_event(event):
                yield text
        if progress.complete:
            return
        if decoder.events_seen == 0 and "text/event-stream" not in content_type:
            logger.warning(
                "openai engine: the upstream answered with content type %s",
                self.redact(content_type, 60) or "none",
            )
            raise UpstreamFailed(
                "the model upstream did not answer with an event stream "
                f"(HTTP {response.status_code})"
            )
        raise UpstreamFailed("the model upstream's stream ended before the reply was complete")

    async def _timed_chunks(
        self, response: httpx.Response, wait: _ReadDeadline
    ) -> AsyncGenerator[bytes, None]:
        """The body's bytes, each read bounded by `wait` (which the reader moves on when content
        arrives) and by the reply's total deadline."""
        chunks = response.aiter_bytes()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(min(wait.at, self.deadline)):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except (TimeoutError, httpx.HTTPError) as error:
                    if not wait.started and isinstance(
                        error, TimeoutError | httpx.TimeoutException
                    ):
                        raise self._missed_first_byte() from None
                    raise self._read_failure(error) from None
                if chunk:
                    yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    async def _bounded_body(
        self, response: httpx.Response, limit: int, first_byte_deadline: float, *, strict: bool
    ) -> bytes:
        """Up to `limit` bytes of a body, read under the same deadlines; always closes it.

        With `strict`, a body too long, too slow or broken is a failure; without, the part read
        so far will do (an error body is read only for its message).
        """
        body = bytearray()
        wait = _ReadDeadline(first_byte_deadline)
        try:
            async with contextlib.aclosing(self._timed_chunks(response, wait)) as chunks:
                async for chunk in chunks:
                    wait.move_to(self._now() + self.between_chunks_wait)  # bytes are content here
                    body += chunk
                    if len(body) > limit:
                        if strict:
                            raise UpstreamFailed("the model upstream's answer is too large")
                        break
        except UpstreamFailed:
            if strict:
                raise
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
        return bytes(body[:limit])

    def _missed_first_byte(self) -> UpstreamTimeout:
        if self._now() >= self.deadline:
            return self._missed_total()
        return UpstreamTimeout(
            f"the model upstream did not start answering within {self.first_byte_wait:g} s"
        )

    def _missed_total(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"the model upstream did not answer in full within {self.policy.total_timeout:g} s"
        )

    def _read_failure(self, error: BaseException) -> UpstreamFailed:
        if isinstance(error, TimeoutError | httpx.TimeoutException):
            if self._now() >= self.deadline:
                return self._missed_total()
            return UpstreamTimeout(
                f"the model upstream stopped sending for more than {self.between_chunks_wait:g} s"
            )
        if isinstance(error, httpx.RemoteProtocolError):
            return UpstreamFailed(
                "the model upstream closed the connection in the middle of the reply"
            )
        return UpstreamFailed(
            f"reading the model upstream's answer failed ({type(error).__name__})"
        )

    def _whole_answer(self, body: bytes, progress: _ReplyProgress) -> str:
        try:
            answer = json.loads(body)
        except ValueError:
            raise UpstreamFailed(
                "the model upstream sent a malformed answer (invalid JSON)"
            ) from None
        if not isinstance(answer, Mapping):
            raise UpstreamFailed("the model upstream sent a malformed answer (not an object)")
        if answer.get("error"):
            described = describe_error_object(answer["error"], self.redact)
            logger.warning("openai engine: the upstream's answer reported: %s", described)
            raise UpstreamFailed("the model upstream reported an error")
        text = progress.take_chunk(answer, delta_key="message")
        progress.done = True
        return text
