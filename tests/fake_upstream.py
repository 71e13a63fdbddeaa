"""A fault-injecting OpenAI-compatible chat-completions server, for testing the `openai` engine.

It runs uvicorn in a background thread with its own event loop, on a free loopback port, so
sync tests and async tests (whose loop must stay free to run the client) can both use it:

    with FakeUpstream() as upstream:
        upstream.mode = "status_500"
        ...  # point a bot's engine_config["base_url"] at upstream.url
        assert upstream.request_count == 3

In mode "ok" it answers "Echo: <the last user message>", streamed word by word with a finish
chunk, a usage chunk (when `stream_options.include_usage` asks) and `data: [DONE]`, or as one
`chat.completion` object when the request says `stream: false`. The other modes break that
answer in the ways real upstreams do; `fail_first()` makes only the next few requests fail.
The keep-alive modes send only SSE comments (`: ping`) every `ping_seconds`, from the start or
after the first chunk, for up to `slow_seconds`: bytes keep flowing, content does not.
Every request is recorded (path, headers, JSON body) so tests can check what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, get_args

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

UpstreamMode = Literal[
    "ok",
    "status_400",
    "status_401",
    "status_429",
    "status_500",
    "status_503",
    "invalid_json",
    "cut_stream",
    "drop_connection",
    "slow_first_byte",
    "slow_first_chunk",
    "slow_between_chunks",
    "error_event",
    "json_instead_of_stream",
    "html_page",
    "awkward_framing",
    "keepalive_only",
    "keepalive_after_first_chunk",
]
UPSTREAM_MODES: tuple[str, ...] = get_args(UpstreamMode)
STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any


class DroppedConnection(Exception):
    """Raised inside a streaming body so uvicorn closes the socket mid-response (no clean end)."""


class _HideDroppedConnections(logging.Filter):
    """uvicorn logs a traceback for the drop we cause on purpose; keep test output readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


_DROP_FILTER = _HideDroppedConnections()


def echo_pieces(body: Any) -> list[str]:
    """The "ok" reply, "Echo: <last user message>", cut into word-sized stream pieces."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    last_user = next(
        (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
    )
    return re.findall(r"\S+\s*", f"Echo: {last_user}") or [""]


def word_count(body: Any) -> int:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def sse(data: Any) -> bytes:
    # Raw UTF-8, not \u escapes, as many servers send it: clients must decode across chunks.
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


class FakeUpstream:
    """The server and its switches. Set the switches between requests, from any thread."""

    mode: UpstreamMode
    failures_left: int
    failure_status: int
    retry_after: str | None
    served_model: str | None

    def __init__(self, *, slow_seconds: float = 3.0, ping_seconds: float = 0.3) -> None:
        self.slow_seconds = slow_seconds
        self.ping_seconds = ping_seconds
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.reset()

    # -- switches --

    def reset(self) -> None:
        """Back to a healthy upstream with no history (per-test isolation on a shared server)."""
        self.mode = "ok"
        self.failures_left = 0
        self.failure_status = 500
        self.retry_after: str | None = None
        self.served_model: str | None = None
        with self._lock:
            self._requests.clear()

    def fail_first(self, count: int, status: int = 500, retry_after: str | None = None) -> None:
        """The next `count` requests answer `status` (with `Retry-After`), later ones succeed."""
        self.failures_left = count
        self.failure_status = status
        self.retry_after = retry_after

    # -- what was received --

    @property
    def url(self) -> str:
        """The base URL a bot's `engine_config["base_url"]` takes (ends in /v1, like OpenAI's)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def last_body(self) -> Any:
        return self.requests[-1].body

    @property
    def last_headers(self) -> dict[str, str]:
        return self.requests[-1].headers

    # -- lifecycle --

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        app = Starlette(
            routes=[Route("/v1/chat/completions", self._chat_completions, methods=["POST"])]
        )
        # log_config=None and log_level=None leave the test process's logging untouched.
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [listener]},
            name=f"fake-upstream-{self.port}",
            daemon=True,
        )
        logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        """Stops at once, cutting any request still sleeping in a slow mode."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)
            logging.getLogger("uvicorn.error").removeFilter(_DROP_FILTER)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the endpoint --

    async def _chat_completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(
                RecordedRequest(request.url.path, dict(request.headers.items()), body)
            )
        if not isinstance(body, dict):
            return self._error(400, "invalid_request_error", "the body is not a JSON object")
        if self.failures_left > 0:
            self.failures_left -= 1
            return self._error(self.failure_status, "server_error", "transient failure")
        mode = self.mode
        if mode.startswith("status_"):
            status = int(mode.removeprefix("status_"))
            return self._error(status, "error", self._refusal_message(status, request))
        if mode == "slow_first_byte":
            await self._pause(request)
        if mode == "html_page":
            return Response("<html><body>Bad gateway</body></html>", media_type="text/html")
        if mode == "json_instead_of_stream" or body.get("stream") is not True:
            return JSONResponse(self._completion(body))
        return StreamingResponse(self._stream(body, mode), media_type="text/event-stream")

    async def _awkward_stream(self, events: bytes) -> AsyncIterator[bytes]:
        """Legal but unusual framing: CRLF line ends, keep-alive comments, an `id:` field, and
        writes cut every 7 bytes (so lines, and UTF-8 characters, straddle chunks)."""
        framed = b": keep-alive\r\n\r\n" + events.replace(b"data: ", b"id: 1\ndata: ")
        framed = framed.replace(b"\n", b"\r\n")
        for start in range(0, len(framed), 7):
            yield framed[start : start + 7]
            await asyncio.sleep(0)

    async def _pings(self) -> AsyncIterator[bytes]:
        """Keep-alive comments for `slow_seconds`: a connection busy with bytes, not content."""
        deadline = time.monotonic() + self.slow_seconds
        while time.monotonic() < deadline:
            yield b": ping\n\n"
            await asyncio.sleep(self.ping_seconds)

    async def _pause(self, request: Request) -> None:
        """Waits `slow_seconds`, but stops as soon as the client gives up and disconnects."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.slow_seconds):
                while (await request.receive())["type"] != "http.disconnect":
                    pass

    def _refusal_message(self, status: int, request: Request) -> str:
        """Like OpenAI's, the 401 message echoes the key it got: the engine must not repeat it."""
        if status == 401:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            return f"Incorrect API key provided: {key}. You can find your API key elsewhere."
        if status == 429:
            return "Rate limit reached for requests"
        if status >= 500:
            return "The server had an error while processing your request"
        return "Invalid value for 'temperature'"

    def _error(self, status: int, kind: str, message: str) -> Response:
        headers = {"retry-after": self.retry_after} if self.retry_after else None
        return JSONResponse(
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
            status_code=status,
            headers=headers,
        )

    def _model(self, body: dict[str, Any]) -> str:
        return self.served_model or str(body.get("model", "fake-model"))

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        pieces = echo_pieces(body)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model(body),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, pieces),
        }

    def _usage(self, body: dict[str, Any], pieces: list[str]) -> dict[str, int]:
        prompt, completion = word_count(body), len(pieces)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _stream(self, body: dict[str, Any], mode: str) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        pieces = echo_pieces(body)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": self._model(body),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                }
            )

        if mode == "awkward_framing":
            async for part in self._awkward_stream(b"".join(chunk({"content": p}) for p in pieces)):
                yield part
            yield chunk({}, finish_reason="stop")
            yield sse("[DONE]")
            return
        if mode == "slow_first_chunk":
            await asyncio.sleep(self.slow_seconds)
        if mode == "keepalive_only":
            async for ping in self._pings():
                yield ping
        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": pieces[0]})
        if mode == "keepalive_after_first_chunk":
            async for ping in self._pings():
                yield ping
        if mode == "slow_between_chunks":
            await asyncio.sleep(self.slow_seconds)
        elif mode == "invalid_json":
            yield b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
            return
        elif mode == "error_event":
            yield sse({"error": {"message": "The model is overloaded", "type": "server_error"}})
            return
        elif mode == "cut_stream":
            return  # a clean end of the body, but no finish_reason and no [DONE]
        elif mode == "drop_connection":
            raise DroppedConnection
        for piece in pieces[1:]:
            yield chunk({"content": piece})
        yield chunk({}, finish_reason="stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": self._model(body),
                    "choices": [],
                    "usage": self._usage(body, pieces),
                }
            )
        yield sse("[DONE]")
