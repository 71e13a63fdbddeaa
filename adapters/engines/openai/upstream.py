"""The HTTP exchange with the upstream: the shared client, attempts and retries, the reply stream.

Apart from the engine (`engine`) because this is where the failure policy of the package
docstring is carried out, and apart from the format rules (`stream`) and the waits
(`deadlines`) so that each can be read without the others. Retries happen only before the
upstream has streamed anything; what an upstream says is logged redacted, and a member's
`detail` is in our own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from adapters.engines.openai.deadlines import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    ReadDeadline,
    TimedReads,
)
from adapters.engines.openai.redaction import describe_error_body
from adapters.engines.openai.sse import EventStreamDecoder
from adapters.engines.openai.stream import ReplyProgress
from adapters.outbound import OutboundAddressRefused, guarded_client
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed, UpstreamTimeout

logger = logging.getLogger(__name__)

# The most we read of a non-streamed answer, and of an error body (we only want its message).
MAX_JSON_ANSWER_BYTES: Final = 4 * 1024 * 1024
MAX_ERROR_BODY_BYTES: Final = 16 * 1024

ADDRESS_REFUSED: Final = "the model upstream's address is not allowed (private or local network)"
_RETRYABLE_STATUSES: Final = frozenset({408, 429})


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


@dataclass
class UpstreamCall(TimedReads):
    """One reply's exchange with the upstream: attempts and retries, then reading the stream."""

    client: httpx.AsyncClient

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
        self, response: httpx.Response, first_byte_deadline: float, progress: ReplyProgress
    ) -> AsyncGenerator[str, None]:
        """The reply's text pieces; raises when the stream breaks, stalls or ends too early."""
        content_type = response.headers.get("content-type", "").lower()
        if content_type.startswith("application/json"):
            # Some servers ignore `stream: true`; a whole chat.completion is still an answer.
            body = await self._bounded_body(
                response, MAX_JSON_ANSWER_BYTES, first_byte_deadline, strict=True
            )
            if text := progress.take_whole_answer(body):
                yield text
            return
        decoder = EventStreamDecoder()
        wait = ReadDeadline(first_byte_deadline)
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
