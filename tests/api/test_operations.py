"""Operations over the API: `GET /metrics`, `X-Request-Id` on every answer and in every log
line, JSON log lines. One database is enough: none of it depends on the store."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from entrypoints.log_format import install_log_format
from tests.api.conftest import ApiUser, client_for, make_app, sign_up
from tests.api.test_conversations_api import _closed_port, knowledge_bot, post, start
from tests.api.test_openai_engine_api import llm_bot
from tests.conftest import clean_engine
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

SAMPLE_LOGGER = "chatbots.test.operations"


@pytest.fixture
async def sqlite(sqlite_url: str) -> str:
    await clean_engine(sqlite_url)
    return sqlite_url


def _with_test_routes(app: FastAPI) -> FastAPI:
    """A route that logs (as any handler may) and one that fails (a 500, logged by the error
    table's `_on_unexpected_error`)."""

    @app.get("/test/speak")
    async def speak() -> dict[str, str]:
        logging.getLogger(SAMPLE_LOGGER).warning("speaking for %s", "the test")
        return {"said": "yes"}

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
async def app(sqlite: str) -> FastAPI:
    return _with_test_routes(make_app(sqlite, outbound_allow_private=True))


@pytest.fixture
async def answering_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """As a server does: a failure is answered with a 500, not raised into the client."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "owner@example.com")


# --- GET /metrics ----------------------------------------------------------------------------


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by name; parsing fails on anything that is not the text format."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


async def _metrics(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, _samples(response.text)


async def test_metrics_count_requests_by_route_template_never_by_raw_path(
    owner: ApiUser,
) -> None:
    bot = await knowledge_bot(owner)
    for _ in range(2):
        read = await owner.client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)
        assert read.status_code == 200
    missing_bot = str(uuid.uuid4())
    gone = await owner.client.get(f"/api/v1/bots/{missing_bot}", headers=owner.headers)
    assert gone.status_code == 404
    unknown_path = f"/no/such/route/{uuid.uuid4().hex}"
    assert (await owner.client.get(unknown_path)).status_code == 404
    await owner.client.request("BREW", "/healthz")  # a method nobody defined: one label

    text, samples = await _metrics(owner.client)
    template = "/api/v1/bots/{bot_id}"
    requests = "chatbots_http_requests_total"
    assert _value(samples, requests, method="GET", route=template, status="200") == 2
    assert _value(samples, requests, method="GET", route=template, status="404") == 1
    assert _value(samples, requests, route="unmatched", status="404") == 1
    assert _value(samples, requests, method="other", route="/healthz", status="405") == 1
    assert _value(samples, requests, method="POST", route="/api/v1/bots", status="201") == 1
    latency = "chatbots_http_request_duration_seconds_count"
    assert _value(samples, latency, method="GET", route=template) == 3
    buckets = [labels for labels, _ in samples["chatbots_http_request_duration_seconds_bucket"]]
    assert {"le", "method", "route"} == set(buckets[0])
    # No raw id or path in any label: cardinality stays bounded by the routes.
    for raw in (bot["id"], missing_bot, unknown_path, "BREW"):
        assert raw not in text
    routes = {labels["route"] for labels, _ in samples[requests]}
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


async def test_metrics_time_the_reply_engines(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    assert (await post(owner, conversation["id"], "when are you open")).status_code == 201
    streamed = await post(owner, conversation["id"], "opening hours", Accept="text/event-stream")
    assert streamed.status_code == 201
    replayed = {"Idempotency-Key": "same-question"}
    for _ in range(2):  # the replay ran no engine: not timed again
        assert (await post(owner, conversation["id"], "hello", **replayed)).status_code == 201
    _, samples = await _metrics(owner.client)
    engine = "chatbots_reply_engine_duration_seconds"
    assert _value(samples, f"{engine}_count", engine="knowledge") == 3
    assert _value(samples, f"{engine}_sum", engine="knowledge") >= 0


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(slow_seconds=3.0) as fake:
        yield fake


async def test_metrics_count_upstream_failures_by_kind(
    owner: ApiUser, upstream: FakeUpstream
) -> None:
    _, before = await _metrics(owner.client)
    failures = "chatbots_upstream_failures_total"
    assert _value(before, failures, kind="failed") == _value(before, failures, kind="timeout") == 0

    refused = await llm_bot(owner, f"http://127.0.0.1:{_closed_port()}/v1")
    conversation = await start(owner, refused["id"])
    retried = {"Idempotency-Key": "refused-once"}
    for _ in range(2):  # the retry replays the failure: counted once
        assert (await post(owner, conversation["id"], "anyone?", **retried)).status_code == 502

    upstream.reset()
    upstream.mode = "cut_stream"  # fails once streaming began: an SSE error event
    cut = await llm_bot(owner, upstream.url)
    conversation = await start(owner, cut["id"])
    streamed = await post(owner, conversation["id"], "story", Accept="text/event-stream")
    assert "event: error" in streamed.text

    upstream.mode = "slow_first_byte"
    slow = await llm_bot(owner, upstream.url, timeout_seconds=0.3)
    conversation = await start(owner, slow["id"])
    assert (await post(owner, conversation["id"], "well?")).status_code == 504

    _, after = await _metrics(owner.client)
    assert _value(after, failures, kind="failed") == 2
    assert _value(after, failures, kind="timeout") == 1


async def test_metrics_stay_out_of_the_api_and_its_document(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/metrics")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    assert not [path for path in spec["paths"] if "metrics" in path]


async def test_metrics_can_be_turned_off(sqlite: str) -> None:
    async for client in client_for(make_app(sqlite, metrics_enabled=False)):
        response = await client.get("/metrics")
        assert response.status_code == 404
        assert len(response.headers["x-request-id"]) == 32


# --- X-Request-Id ----------------------------------------------------------------------------

ANSWERS = [
    ("GET", "/healthz", {}, 200),
    ("GET", "/no/such/route", {}, 404),
    ("DELETE", "/healthz", {}, 405),
    ("GET", "/api/v1/users/me", {}, 401),
    ("POST", "/api/v1/auth/register", {"json": {"email": "nope"}}, 422),
    ("POST", "/api/v1/auth/register", {"content": b"{", "headers": {"content-type": "x/y"}}, 415),
    ("POST", "/api/v1/bots", {"content": b"x" * (3 * 1024 * 1024)}, 413),
    ("GET", "/test/boom", {}, 500),
    ("GET", "/metrics", {}, 200),
]


@pytest.mark.parametrize(("method", "path", "extra", "status"), ANSWERS)
async def test_every_answer_carries_a_request_id(
    answering_client: httpx.AsyncClient,
    method: str,
    path: str,
    extra: dict[str, Any],
    status: int,
) -> None:
    extra = dict(extra)
    headers = extra.pop("headers", {})
    kept = await answering_client.request(
        method, path, headers={**headers, "X-Request-Id": "client-chose:this.1"}, **extra
    )
    assert kept.status_code == status, kept.text
    assert kept.headers.get_list("x-request-id") == ["client-chose:this.1"]
    fresh = await answering_client.request(method, path, headers=headers, **extra)
    new_id = fresh.headers["x-request-id"]
    assert uuid.UUID(hex=new_id).version == 4
    refused = await answering_client.request(
        method, path, headers={**headers, "X-Request-Id": "no spaces, please"}, **extra
    )
    assert refused.headers["x-request-id"] not in (new_id, "no spaces, please")
    assert uuid.UUID(hex=refused.headers["x-request-id"]).version == 4


async def test_a_stream_carries_a_request_id(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    response = await post(
        owner, conversation["id"], "hi", Accept="text/event-stream", **{"X-Request-Id": "sse-1"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "sse-1"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """A handler on the root logger, as `make run` has, added before the app is built (the app
    gives the handlers it finds their request id field and format)."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    root = logging.getLogger()
    root.addHandler(handler)
    yield output
    root.removeHandler(handler)


async def test_every_log_line_of_a_request_carries_its_id(
    sqlite: str, log_output: io.StringIO
) -> None:
    app = _with_test_routes(make_app(sqlite))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        spoke = await client.get("/test/speak", headers={"X-Request-Id": "req-speak"})
        failed = await client.get("/test/boom", headers={"X-Request-Id": "req-boom"})
        unnamed = await client.get("/test/speak")
    logging.getLogger(SAMPLE_LOGGER).warning("between requests")
    assert (spoke.status_code, failed.status_code) == (200, 500)
    lines = log_output.getvalue().splitlines()
    assert "[req-speak] speaking for the test" in lines
    assert "[req-boom] unhandled error on GET /test/boom" in lines  # the error table's line
    assert f"[{unnamed.headers['x-request-id']}] speaking for the test" in lines
    assert "between requests" in lines  # no id outside a request


@pytest.fixture
def json_logs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Handlers on the root logger and on uvicorn's access logger; the text format back after."""
    ours, uvicorns = io.StringIO(), io.StringIO()
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    handlers = (logging.StreamHandler(ours), logging.StreamHandler(uvicorns))
    root.addHandler(handlers[0])
    access.addHandler(handlers[1])
    yield ours, uvicorns
    root.removeHandler(handlers[0])
    access.removeHandler(handlers[1])
    install_log_format(json_lines=False)  # pytest's own handlers are shared by later tests


async def test_json_log_lines(sqlite: str, json_logs: tuple[io.StringIO, io.StringIO]) -> None:
    ours, uvicorns = json_logs
    app = _with_test_routes(make_app(sqlite, log_format="json"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/test/speak", headers={"X-Request-Id": "json-speak"})
        await client.get("/test/boom", headers={"X-Request-Id": "json-boom"})
    logging.getLogger("uvicorn.access").warning('%s - "%s %s" %d', "127.0.0.1", "GET", "/", 200)
    # The error escapes the app after the 500 (to be logged by the server, as uvicorn does).
    raising = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with raising, asyncio.timeout(10):
        with pytest.raises(RuntimeError) as escaped:
            await raising.get("/test/boom", headers={"X-Request-Id": "json-escaped"})
    logging.getLogger("uvicorn.error").error(
        "Exception in ASGI application", exc_info=escaped.value
    )

    entries = [json.loads(line) for line in ours.getvalue().splitlines()]
    for entry in entries:
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry)
    spoken = next(e for e in entries if e["message"] == "speaking for the test")
    assert (spoken["level"], spoken["logger"], spoken["request_id"]) == (
        "WARNING",
        SAMPLE_LOGGER,
        "json-speak",
    )
    assert "exception" not in spoken
    failure = next(e for e in entries if e["request_id"] == "json-boom")
    assert failure["message"] == "unhandled error on GET /test/boom"
    assert failure["level"] == "ERROR"
    assert failure["logger"] == "chatbots.api"
    assert "Traceback" not in failure["message"]
    assert "builtins.RuntimeError: secret internals" in failure["exception"]

    server_line = entries[-1]
    assert (server_line["logger"], server_line["request_id"]) == ("uvicorn.error", "json-escaped")
    assert server_line["message"] == "Exception in ASGI application"
    assert "RuntimeError: secret internals" in server_line["exception"]

    access = [json.loads(line) for line in uvicorns.getvalue().splitlines()]
    assert access[-1]["logger"] == "uvicorn.access"
    assert access[-1]["message"] == '127.0.0.1 - "GET /" 200'
    assert access[-1]["request_id"] is None  # written outside a request


async def test_text_is_the_default_format(sqlite: str, log_output: io.StringIO) -> None:
    make_app(sqlite)
    logging.getLogger(SAMPLE_LOGGER).warning("plain")
    assert log_output.getvalue().splitlines()[-1] == "plain"
