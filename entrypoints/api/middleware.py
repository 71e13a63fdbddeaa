"""ASGI middleware: a request body limit that answers in problem+json like every other error."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.api.problems import Problem


def body_too_large(detail: str) -> Problem:
    return Problem(413, detail, slug="body-too-large")


class BodySizeLimit:
    """413 for bodies over `max_bytes`: at once when Content-Length says so, and while reading
    when a chunked body grows past it (the route's error handler renders that one)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                problem = body_too_large(self._detail())
                await problem.response_for(scope["path"])(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."
