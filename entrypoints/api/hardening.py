"""ASGI middleware that holds for every route: the text rule on inputs, and hardening headers.

Both are pure ASGI (no `BaseHTTPMiddleware`): they run on every request, and a Starlette
`BaseHTTPMiddleware` would add a task and a memory stream to each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.text import UNSTORABLE_TEXT_MESSAGE, is_storable
from entrypoints.api.middleware import body_too_large
from entrypoints.api.problems import OPENAI_PATH_PREFIX, Problem

# Bytes without which a JSON body cannot decode to a NUL or a lone surrogate: an escape (\u),
# a raw NUL (invalid JSON anyway) or an encoded surrogate (0xED 0xA0-0xBF, which Python's
# json module lets through). Bodies without any skip the second parse.
_SUSPECT_JSON_BYTES: Final = (b"\\u", b"\x00", b"\xed")
_CHECKED_MEDIA_TYPES: Final = ("application/json", "application/x-www-form-urlencoded")


def _unstorable_locations(value: Any, loc: tuple[str | int, ...]) -> Iterator[list[str | int]]:
    if isinstance(value, str):
        if not is_storable(value):
            yield list(loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not is_storable(key):
                yield [*loc, "(key)"]
            else:
                yield from _unstorable_locations(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_locations(item, (*loc, index))


def _body_locations(media_type: str, body: bytes) -> list[list[str | int]]:
    if media_type == "application/json":
        if not any(marker in body for marker in _SUSPECT_JSON_BYTES):
            return []
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return []  # the route answers 400 for a body that is not JSON
        return list(_unstorable_locations(parsed, ("body",)))
    if b"%00" not in body and b"\x00" not in body:
        return []
    fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    return [["body", name] for name, value in fields if "\x00" in name + value]


def _query_locations(query_string: bytes) -> list[list[str | int]]:
    if b"%00" not in query_string and b"\x00" not in query_string:
        return []
    fields = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return [["query", name] for name, value in fields if "\x00" in name + value]


def media_type(scope: Scope) -> str:
    """The request's media type (Content-Type without parameters, lower case), else ""."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: str = value.split(b";", 1)[0].strip().lower().decode("latin-1")
            return media_type
    return ""


class TextInputRule:
    """422 for any text input that carries a NUL or an unpaired surrogate: path, query string,
    JSON bodies (keys too) and form fields, before a route sees them. One rule instead of one
    per field, so no input can reach the database or an echoing error message with one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await self._refuse(scope, receive, send, [["path"]])
            return
        if found := _query_locations(scope["query_string"]):
            await self._refuse(scope, receive, send, found)
            return
        sent_type = media_type(scope)
        if sent_type not in _CHECKED_MEDIA_TYPES:
            await self.app(scope, receive, send)
            return
        try:
            messages = await _whole_body(receive)
        except HTTPException as error:  # the body limit, raised by the middleware around us
            problem = body_too_large(str(error.detail))
            await problem.response_for(scope["path"])(scope, receive, send)
            return
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if found := _body_locations(sent_type, body):
            await self._refuse(scope, receive, send, found)
            return
        await self.app(scope, _replaying(messages, receive), send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, locations: list[list[str | int]]
    ) -> None:
        problem = Problem(
            422,
            "The request contains text that cannot be stored.",
            slug="validation-error",
            title="Validation error",
            errors=[{"loc": loc, "msg": UNSTORABLE_TEXT_MESSAGE} for loc in locations],
        )
        await problem.response_for(scope["path"])(scope, receive, send)


async def _whole_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_DOCS_PATHS: Final = ("/docs", "/redoc")
# Swagger UI and ReDoc run an inline start-up script and inline styles; everything they load
# comes from this origin (their files are served by the process itself).
DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
)
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
_DOCS_CSP_HEADER: Final = (b"content-security-policy", DOCS_CSP.encode())
_API_CSP_HEADER: Final = (b"content-security-policy", API_CSP.encode())
_COMMON_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """Headers every answer carries: no MIME sniffing, no framing, no referrer, a CSP, and
    `Cache-Control: no-store` on API answers (tokens, keys and private data must not sit in a
    shared cache) unless a route chose its own caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        csp = _DOCS_CSP_HEADER if path.startswith(_DOCS_PATHS) else _API_CSP_HEADER
        private = path.startswith(("/api/", OPENAI_PATH_PREFIX))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *_COMMON_HEADERS, csp]
                if private and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
