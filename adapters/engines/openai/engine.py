"""`OpenAICompatibleEngine`: the `ReplyEngine` port over an OpenAI-compatible upstream.

Apart from the exchange (`upstream`) so that the port's side stays short: per reply it checks
the bot's settings again, picks the offered key, fetches the knowledge context, and turns the
upstream's text into `ReplyChunk`s and one `ReplyDone`. It is the one place a failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Collection, Mapping
from typing import Final

import httpx

from adapters.engines.openai.config import UpstreamSettings
from adapters.engines.openai.deadlines import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    CallPolicy,
)
from adapters.engines.openai.payload import chat_payload, request_headers
from adapters.engines.openai.redaction import Redactor
from adapters.engines.openai.stream import ReplyProgress
from adapters.engines.openai.upstream import UpstreamCall
from application.errors import UpstreamFailed
from application.ports import (
    KnowledgeRetriever,
    Reply,
    ReplyChunk,
    ReplyDone,
    ReplyEvent,
    ReplyRequest,
    RetrievedEntry,
)
from domain.bots import Bot

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "openai"


class OpenAICompatibleEngine:
    """Answers through an OpenAI-compatible `/chat/completions` endpoint, streaming.

    `client` is shared (connection pooling) and owned by the caller, who closes it. `retriever`
    supplies the knowledge entries sent as context; without one, only the system prompt is.
    `upstream_keys` maps the variable names the operator offers to their values, read once at
    start (`adapters.engines.openai.keys`); a bot's `api_key_env` is looked up there and
    nowhere else, so without it no bot sends a key. Waits:
    `connect_timeout` to open a connection, `first_byte_timeout` from sending the request to the
    first streamed event (models may think a while), `read_timeout` between streamed events, and
    `total_timeout` for the whole reply including retries. A bot's `timeout_seconds` replaces the
    first-byte and between-chunks waits. `max_retries` retries follow the first attempt, after
    `backoff_seconds` doubled each time, or after `Retry-After` when the upstream asks for a
    wait of at most `max_retry_after_seconds` (asked for longer, we give up at once rather than
    keep the user waiting or call back sooner than allowed).
    """

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
        # The operator's entries, with the hosts keys are bound to (keys.py).
        self._key_offers = tuple(key_offers if key_offers is not None else self._upstream_keys)
        self._policy = CallPolicy(
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_retry_after_seconds=max_retry_after_seconds,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
        )

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        return None  # every reply is a call to the upstream

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
        settings = UpstreamSettings.of(request.bot.engine_config, self._key_offers)
        api_key = self._api_key(settings)
        entries = await self._relevant_entries(request, settings)
        call = UpstreamCall(
            client=self._client,
            policy=self._policy,
            settings=settings,
            redact=Redactor(api_key),
            deadline=asyncio.get_running_loop().time() + self._policy.total_timeout,
        )
        response, first_byte_deadline = await call.open_stream(
            chat_payload(request, settings, entries), request_headers(api_key)
        )
        progress = ReplyProgress(model=settings.model, redact=call.redact)
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

    def _api_key(self, settings: UpstreamSettings) -> str | None:
        if settings.api_key_env is None:
            return None
        # UpstreamSettings.of has refused names that are not offered.
        key = self._upstream_keys.get(settings.api_key_env, "").strip()
        if not key:
            raise UpstreamFailed(
                f"the environment variable {settings.api_key_env} (the bot's api_key_env) "
                "is not set, so the model upstream cannot be called"
            )
        return key

    async def _relevant_entries(
        self, request: ReplyRequest, settings: UpstreamSettings
    ) -> list[RetrievedEntry]:
        if self._retriever is None or settings.context_entries == 0:
            return []
        found = await self._retriever.retrieve(
            request.bot, request.message, settings.context_entries
        )
        return found[: settings.context_entries]
