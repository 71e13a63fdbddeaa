"""One consumer of an exchange's events (application/conversations/events.py), three renderings:
the blocking answer, our server-sent events, and OpenAI's `chat.completion.chunk` stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from application.conversations import ExchangeEvent, ReplyDelta, ReplyStored, UserMessageStored
from application.errors import ApplicationError, UpstreamFailed
from domain.conversations import Message
from entrypoints.api.errors import problem_for
from entrypoints.api.streaming import completed_even_if_abandoned

REPLAYED_HEADER = "Idempotent-Replayed"


class Exchange:
    """An exchange whose first event has arrived: the user's message is stored, so a refusal
    (404, 409, ...) was raised before any answer started and kept its own status code."""

    def __init__(self, first: UserMessageStored, rest: AsyncIterator[ExchangeEvent]) -> None:
        self.user_message = first.message
        self.replayed = first.replayed
        self._rest = rest

    @classmethod
    async def begin(cls, events: AsyncIterator[ExchangeEvent]) -> Exchange:
        iterator = events.__aiter__()
        first = await iterator.__anext__()
        if not isinstance(first, UserMessageStored):  # pragma: no cover - the use case's order
            raise UpstreamFailed("The exchange did not start with the user's message.")
        return cls(first, iterator)

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}

    async def reply(self) -> Message:
        """The stored reply, once the whole exchange has run (the blocking answer)."""
        reply = None
        async for event in self._rest:
            if isinstance(event, ReplyStored):
                reply = event.message
        if reply is None:  # pragma: no cover - the use case always ends with the stored reply
            raise UpstreamFailed("The reply was not produced.")
        return reply

    def _render(
        self,
        on_delta: Callable[[str], bytes],
        on_done: Callable[[Message], bytes],
        on_error: Callable[[ApplicationError], bytes],
    ) -> AsyncIterator[bytes]:
        async def rendered() -> AsyncIterator[bytes]:
            try:
                # The exchange runs to its end even if the listener goes: the reply is stored.
                async for event in completed_even_if_abandoned(self._rest):
                    if isinstance(event, ReplyDelta):
                        yield on_delta(event.text)
                    elif isinstance(event, ReplyStored):
                        yield on_done(event.message)
            except ApplicationError as error:
                yield on_error(error)

        return rendered()

    def server_sent_events(self, render_message: Callable[[Message], Any]) -> AsyncIterator[bytes]:
        """`delta` events while the reply is produced, then `done` with the stored reply; an
        `error` event (a problem object) if the engine fails once streaming has begun."""
        return self._render(
            lambda text: _event("delta", {"content": text}),
            lambda reply: _event("done", render_message(reply)),
            lambda error: problem_for(error).sse_event(),
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
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        body = self._render(
            lambda text: chunk({"content": text}),
            lambda _reply: chunk({}, "stop"),
            lambda error: problem_for(error).openai_sse_chunk(),
        )

        async def framed() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            async for piece in body:
                yield piece
            yield b"data: [DONE]\n\n"

        return framed()


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
