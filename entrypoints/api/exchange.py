"""One consumer of an exchange's events (application/conversations/events.py), three renderings:
the blocking answer, our server-sent events, and OpenAI's `chat.completion.chunk` stream.

Being the one consumer, it is also where a reply's engine latency and an upstream's failures
are reported (to the metrics, when they are on), and where a stream gets its heartbeats.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from fastapi import Request

from application.conversations import ExchangeEvent, ReplyDelta, ReplyStored, UserMessageStored
from application.errors import ApplicationError, UpstreamFailed
from domain.conversations import Message
from entrypoints.api.errors import kind_of, problem_for
from entrypoints.api.streaming import Silence, completed_even_if_abandoned

REPLAYED_HEADER = "Idempotent-Replayed"
# An SSE comment: every SSE client (EventSource, OpenAI's SDKs) skips it; a proxy sees bytes.
HEARTBEAT: Final = b": keep-alive\n\n"
DEFAULT_HEARTBEAT_SECONDS: Final = 15.0
_UPSTREAM_KINDS: Final = {502: "failed", 504: "timeout"}


class ExchangeObserver(Protocol):
    """Told what the exchanges the API consumes produced (entrypoints/api/metrics.py)."""

    def reply_produced(self, engine: str, seconds: float) -> None: ...

    def upstream_failed(self, kind: str) -> None: ...


@dataclass(frozen=True)
class ExchangeSettings:
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    observer: ExchangeObserver | None = None


def exchange_settings(request: Request) -> ExchangeSettings:
    """The settings of the app serving `request` (create_app puts them on its state)."""
    found = getattr(request.app.state, "exchange_settings", None)
    return cast(ExchangeSettings, found) if found is not None else ExchangeSettings()


class Exchange:
    """An exchange whose first event has arrived: the user's message is stored, so a refusal
    (404, 409, ...) was raised before any answer started and kept its own status code."""

    def __init__(
        self,
        first: UserMessageStored,
        rest: AsyncIterator[ExchangeEvent],
        settings: ExchangeSettings | None = None,
    ) -> None:
        self.user_message = first.message
        self.replayed = first.replayed
        self._rest = rest
        self._settings = settings or ExchangeSettings()

    @classmethod
    async def begin(
        cls, events: AsyncIterator[ExchangeEvent], settings: ExchangeSettings | None = None
    ) -> Exchange:
        iterator = events.__aiter__()
        first = await iterator.__anext__()
        if not isinstance(first, UserMessageStored):  # pragma: no cover - the use case's order
            raise UpstreamFailed("The exchange did not start with the user's message.")
        return cls(first, iterator, settings)

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}

    async def reply(self) -> Message:
        """The stored reply, once the whole exchange has run (the blocking answer)."""
        reply = None
        try:
            async for event in self._rest:
                if isinstance(event, ReplyStored):
                    reply = event.message
        except ApplicationError as error:
            self._failed(error)
            raise
        if reply is None:  # pragma: no cover - the use case always ends with the stored reply
            raise UpstreamFailed("The reply was not produced.")
        self._produced(reply)
        return reply

    def _produced(self, reply: Message) -> None:
        observer = self._settings.observer
        if observer is None or self.replayed:  # a replay ran no engine
            return
        engine, latency_ms = reply.metadata.get("engine"), reply.metadata.get("latency_ms")
        if isinstance(engine, str) and isinstance(latency_ms, int | float):
            observer.reply_produced(engine, latency_ms / 1000)

    def _failed(self, error: ApplicationError) -> None:
        observer, kind = self._settings.observer, kind_of(error)
        if observer is None or self.replayed or kind is None:
            return
        if (upstream := _UPSTREAM_KINDS.get(kind.status)) is not None:
            observer.upstream_failed(upstream)

    def _render(
        self,
        on_delta: Callable[[str], bytes],
        on_done: Callable[[Message], bytes],
        on_error: Callable[[ApplicationError], bytes],
    ) -> AsyncIterator[bytes]:
        async def rendered() -> AsyncIterator[bytes]:
            # The exchange runs to its end even if the listener goes: the reply is stored.
            # While it sends nothing (an upstream thinking), a comment every few seconds keeps
            # proxies from taking the stream for dead.
            events = completed_even_if_abandoned(self._rest, self._settings.heartbeat_seconds)
            try:
                async for event in events:
                    if isinstance(event, ReplyDelta):
                        yield on_delta(event.text)
                    elif isinstance(event, Silence):
                        yield HEARTBEAT
                    elif isinstance(event, ReplyStored):
                        self._produced(event.message)
                        yield on_done(event.message)
            except ApplicationError as error:
                self._failed(error)
                yield on_error(error)

        return rendered()

    def server_sent_events(self, render_message: Callable[[Message], Any]) -> AsyncIterator[bytes]:
        """`delta` events while the reply is produced, then `done` with the stored reply; an
        `error` event (a problem object) if the engine fails once streaming has begun. Each
        event's `id` is its place in the reply, `<user message id>:<1, 2, 3, ...>`."""
        prefix = f"id: {self.user_message.id}:".encode()
        position = 0

        def numbered(event: bytes) -> bytes:
            nonlocal position
            position += 1
            return b"%s%d\n%s" % (prefix, position, event)

        return self._render(
            lambda text: numbered(_event("delta", {"content": text})),
            lambda reply: numbered(_event("done", render_message(reply))),
            lambda error: numbered(_event("error", problem_for(error).body())),
        )

    def openai_chunks(self, model: str, created: int) -> AsyncIterator[bytes]:
        """`chat.completion.chunk`s: the role, the content as it comes, `stop`, `[DONE]`."""
        completion_id = f"chatcmpl-{int(created * 1000):x}"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return _data(payload)

        body = self._render(
            lambda text: chunk({"content": text}),
            lambda _reply: chunk({}, "stop"),
            lambda error: _data(problem_for(error).openai_body()),
        )

        async def framed() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            async for piece in body:
                yield piece
            yield b"data: [DONE]\n\n"

        return framed()


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _data(data: Any) -> bytes:
    """An unnamed event, as OpenAI's streams send them."""
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
