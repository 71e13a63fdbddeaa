"""Every request observed: its id (`X-Request-Id`, in every log line) and, with metrics on, its
latency and status by route template.

Pure ASGI and the outermost layer (outside Starlette's error middleware), so that it sees every
answer: a 500 rendered by the error table, a 413 from the body limit, a stream. It touches only
the response's start message, never a body chunk.
"""

from __future__ import annotations

import os
import re
from time import perf_counter
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.api.metrics import UNMATCHED_ROUTE, ServiceMetrics
from entrypoints.log_format import ERROR_REQUEST_ID, REQUEST_ID

REQUEST_ID_HEADER: Final = b"x-request-id"
# What a client's id may be to be kept: short, and nothing a log or a header could trip on.
_SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# A UUID's variant digit (binary 10xx) for each random hex digit.
_VARIANT_DIGIT: Final = {f"{d:x}": f"{(d & 0b11) | 0b1000:x}" for d in range(16)}


def new_request_id() -> str:
    """A random UUID 4 as 32 hex digits, what `uuid4().hex` gives, at a third of its cost (no
    UUID object is built): the version digit is 4, the variant digit 8, 9, a or b."""
    digits = os.urandom(16).hex()
    return f"{digits[:12]}4{digits[13:16]}{_VARIANT_DIGIT[digits[16]]}{digits[17:]}"


def request_id_of(scope: Scope) -> str:
    """The client's `X-Request-Id` when it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                kept: str = value.decode("ascii")
                return kept
            break
    return new_request_id()


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that answered (`/api/v1/bots/{bot_id}`), never the path."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    mounted = scope.get("root_path", "")
    if isinstance(mounted, str) and mounted != root_path:  # a mounted app (the docs' files)
        return f"{mounted.removeprefix(root_path)}/{{path}}"
    return UNMATCHED_ROUTE


class ObservedRequests:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        token = REQUEST_ID.set(request_id)
        status = 500  # if the app fails before it answers (the server then answers 500)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics, root_path, started = self.metrics, scope.get("root_path", ""), perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # The server logs it once we are gone: its line names the request all the same.
            setattr(error, ERROR_REQUEST_ID, request_id)
            raise
        finally:
            REQUEST_ID.reset(token)
            if metrics is not None:
                elapsed = perf_counter() - started
                template = route_template(scope, root_path)
                metrics.request_answered(scope["method"], template, status, elapsed)
