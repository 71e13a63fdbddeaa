"""The `openai` engine against a real HTTP server that misbehaves on request (tests/fake_upstream).

Every fault an OpenAI-compatible upstream can show must end in `UpstreamTimeout` (504) or
`UpstreamFailed` (502) with a short detail that never holds the key, quickly: the engines here
run with tiny timeouts and backoffs, while the fake's slow modes stall for 8 s, so a test that
passes in well under that proves the wait was bounded by the engine and not by the fake.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from adapters.engines.openai import (
    OpenAICompatibleEngine,
    build_http_client,
    validate_openai_config,
)
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed, UpstreamTimeout
from application.ports import ReplyChunk, ReplyDone, ReplyEvent, ReplyRequest, RetrievedEntry
from domain.bots import Bot, EngineKind
from domain.conversations import Message, MessageRole
from tests.factories import BotFactory, MessageFactory
from tests.fake_upstream import FakeUpstream, UpstreamMode

pytestmark = pytest.mark.integration

KEY_VARIABLE = "FAKE_UPSTREAM_API_KEY"
SECRET_KEY = "sk-test-Zq8vN3kP0wLr5tY7uI2oE4aS6dF9gH1j"
SLOW_SECONDS = 8.0  # how long the fake stalls; every bounded wait must end far sooner
# Generous for a loaded CI machine, and still far below SLOW_SECONDS and a 30 s Retry-After.
BOUNDED = 4.0
# The fake listens on 127.0.0.1, which the guarded client refuses unless the operator allows it.
LOCAL_UPSTREAMS = OutboundPolicy(allow_private=True)


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(slow_seconds=SLOW_SECONDS) as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> FakeUpstream:
    running_upstream.reset()
    return running_upstream


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with build_http_client(LOCAL_UPSTREAMS) as client:
        yield client


class FakeRetriever:
    """Returns fixed entries, best first, and records what it was asked."""

    def __init__(self, entries: list[RetrievedEntry]) -> None:
        self.entries = entries
        self.calls: list[tuple[str, int]] = []

    async def retrieve(self, bot: Bot, query: str, limit: int) -> list[RetrievedEntry]:
        self.calls.append((query, limit))
        return self.entries[:limit]


def retrieved(question: str, answer: str, score: float = 0.9) -> RetrievedEntry:
    return RetrievedEntry(entry_id=uuid.uuid4(), question=question, answer=answer, score=score)


def fast_engine(
    client: httpx.AsyncClient, retriever: FakeRetriever | None = None, **overrides: Any
) -> OpenAICompatibleEngine:
    """An engine whose every wait is tiny, so fault tests stay fast."""
    options: dict[str, Any] = {
        "upstream_keys": {KEY_VARIABLE: SECRET_KEY},  # what the operator offers
        "max_retries": 2,
        "backoff_seconds": 0.01,
        "max_retry_after_seconds": 1.5,
        "connect_timeout": 2.0,
        "first_byte_timeout": 1.0,
        "read_timeout": 1.0,
        "total_timeout": 6.0,
        **overrides,
    }
    return OpenAICompatibleEngine(client, retriever, **options)


def openai_bot(base_url: str, *, system_prompt: str = "", **config: Any) -> Bot:
    engine_config = {"base_url": base_url, "model": "fake-model", "api_key_env": KEY_VARIABLE}
    engine_config.update(config)
    bot: Bot = BotFactory.build(
        engine=EngineKind.OPENAI, engine_config=engine_config, system_prompt=system_prompt
    )
    return bot


def ask(
    bot: Bot, message: str = "hello there", history: list[Message] | None = None
) -> ReplyRequest:
    return ReplyRequest(bot=bot, history=history or [], message=message)


async def collect(engine: OpenAICompatibleEngine, request: ReplyRequest) -> tuple[str, ReplyDone]:
    texts: list[str] = []
    events: list[ReplyEvent] = [event async for event in engine.reply(request)]
    for event in events[:-1]:
        assert isinstance(event, ReplyChunk)
        texts.append(event.text)
    done = events[-1]
    assert isinstance(done, ReplyDone)
    return "".join(texts), done


async def collect_until_failure(
    engine: OpenAICompatibleEngine, request: ReplyRequest
) -> tuple[list[str], UpstreamFailed]:
    """The chunks yielded before the engine raised, and what it raised."""
    texts: list[str] = []
    with pytest.raises(UpstreamFailed) as raised:
        async for event in engine.reply(request):
            assert isinstance(event, ReplyChunk), "no ReplyDone may follow a failure"
            texts.append(event.text)
    return texts, raised.value


def assert_no_secret(error: BaseException, *texts: str) -> None:
    for shown in (str(error), repr(error.args), getattr(error, "detail", ""), *texts):
        assert SECRET_KEY not in shown
        assert SECRET_KEY[-12:] not in shown


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- the happy path and what is sent -------------------------------------------------------------


async def test_streams_the_reply_in_chunks_then_done_with_usage(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    engine = fast_engine(http_client)
    chunks = [e async for e in engine.reply(ask(openai_bot(upstream.url), "hello there"))]

    texts = [e.text for e in chunks if isinstance(e, ReplyChunk)]
    assert texts == ["Echo: ", "hello ", "there"]
    done = chunks[-1]
    assert isinstance(done, ReplyDone)
    assert done.metadata == {
        "engine": "openai",
        "model": "fake-model",
        "confidence": 1.0,
        "fallback": False,
        "sources": [],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
        "finish_reason": "stop",
    }
    assert upstream.request_count == 1
    assert upstream.requests[0].path == "/v1/chat/completions"


async def test_sends_system_prompt_context_history_and_settings(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    entries = [
        retrieved("What are your opening hours?", "9 to 5, Monday to Friday."),
        retrieved("Where are you?", "12 Harbour Street."),
        retrieved("Do you deliver?", "Yes, within 10 km."),
    ]
    retriever = FakeRetriever(entries)
    engine = fast_engine(http_client, retriever)
    bot = openai_bot(
        upstream.url,
        system_prompt="You are the shop's assistant.",
        temperature=0.3,
        max_tokens=128,
        context_entries=2,
    )
    history = [
        MessageFactory.build(role=MessageRole.ASSISTANT, content="Hello! How can I help?"),
        MessageFactory.build(role=MessageRole.USER, content="Are you open today?"),
        MessageFactory.build(role=MessageRole.ASSISTANT, content="Yes, we are."),
    ]

    text, done = await collect(engine, ask(bot, "Until when?", history))

    assert text == "Echo: Until when?"
    assert retriever.calls == [("Until when?", 2)]
    assert done.metadata["sources"] == [str(entries[0].entry_id), str(entries[1].entry_id)]
    body = upstream.last_body
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 128
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    system, *rest = body["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You are the shop's assistant.")
    assert "Q: What are your opening hours?\nA: 9 to 5, Monday to Friday." in system["content"]
    assert "Q: Where are you?\nA: 12 Harbour Street." in system["content"]
    assert "Do you deliver?" not in system["content"]
    assert rest == [
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Are you open today?"},
        {"role": "assistant", "content": "Yes, we are."},
        {"role": "user", "content": "Until when?"},
    ]


async def test_asks_the_retriever_for_three_entries_by_default(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    retriever = FakeRetriever([retrieved(f"Question {n}?", f"Answer {n}.") for n in range(5)])
    _, done = await collect(fast_engine(http_client, retriever), ask(openai_bot(upstream.url)))

    assert retriever.calls == [("hello there", 3)]
    assert len(done.metadata["sources"]) == 3


async def test_sends_no_system_message_and_no_sampling_settings_when_none_are_set(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    retriever = FakeRetriever([retrieved("Question?", "Answer.")])
    bot = openai_bot(upstream.url, context_entries=0)
    await collect(fast_engine(http_client, retriever), ask(bot, "hi"))

    assert retriever.calls == []
    assert upstream.last_body["messages"] == [{"role": "user", "content": "hi"}]
    assert "temperature" not in upstream.last_body
    assert "max_tokens" not in upstream.last_body


async def test_sends_the_key_from_the_named_environment_variable(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    await collect(fast_engine(http_client), ask(openai_bot(upstream.url)))

    assert upstream.last_headers["authorization"] == f"Bearer {SECRET_KEY}"


async def test_sends_no_authorization_without_api_key_env(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    bot = openai_bot(upstream.url, api_key_env=None)
    await collect(fast_engine(http_client, upstream_keys={}), ask(bot))

    assert "authorization" not in upstream.last_headers


async def test_a_missing_key_variable_fails_naming_the_variable_without_calling(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    offered_but_unset = {KEY_VARIABLE: "", "OTHER": SECRET_KEY}
    _, error = await collect_until_failure(
        fast_engine(http_client, upstream_keys=offered_but_unset), ask(openai_bot(upstream.url))
    )

    assert type(error) is UpstreamFailed
    assert f"{KEY_VARIABLE} (the bot's api_key_env) is not set" in error.detail
    assert_no_secret(error)
    assert upstream.request_count == 0


async def test_an_invalid_engine_config_fails_without_calling(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    bot = openai_bot(upstream.url, temperature=7)
    _, error = await collect_until_failure(fast_engine(http_client), ask(bot))

    assert "engine_config is invalid" in error.detail
    assert "temperature" in error.detail
    assert upstream.request_count == 0


async def test_reports_the_model_the_upstream_says_it_used(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.served_model = "fake-model-2026-01-01"
    _, done = await collect(fast_engine(http_client), ask(openai_bot(upstream.url)))

    assert done.metadata["model"] == "fake-model-2026-01-01"


async def test_accepts_a_whole_completion_when_the_upstream_does_not_stream(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.mode = "json_instead_of_stream"
    text, done = await collect(fast_engine(http_client), ask(openai_bot(upstream.url), "hi you"))

    assert text == "Echo: hi you"
    assert done.metadata["finish_reason"] == "stop"
    assert done.metadata["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_reads_unusually_framed_streams_with_split_characters(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.mode = "awkward_framing"
    text, done = await collect(
        fast_engine(http_client), ask(openai_bot(upstream.url), "café ☕ ok")
    )

    assert text == "Echo: café ☕ ok"
    assert done.metadata["finish_reason"] == "stop"


# --- faults --------------------------------------------------------------------------------------

FAULTS: list[tuple[UpstreamMode, type[UpstreamFailed], str, int]] = [
    # mode, the error class exactly, words in its detail, requests the upstream receives
    ("status_400", UpstreamFailed, "HTTP 400", 1),
    ("status_401", UpstreamFailed, "HTTP 401", 1),
    ("status_429", UpstreamFailed, "HTTP 429", 3),
    ("status_500", UpstreamFailed, "HTTP 500", 3),
    ("status_503", UpstreamFailed, "HTTP 503", 3),
    ("invalid_json", UpstreamFailed, "invalid JSON", 1),
    ("cut_stream", UpstreamFailed, "ended before the reply was complete", 1),
    ("drop_connection", UpstreamFailed, "closed the connection", 1),
    ("error_event", UpstreamFailed, "reported an error in the stream", 1),
    ("html_page", UpstreamFailed, "did not answer with an event stream", 1),
    ("slow_first_byte", UpstreamTimeout, "did not start answering within 1 s", 1),
    ("slow_first_chunk", UpstreamTimeout, "did not start answering within 1 s", 1),
    ("slow_between_chunks", UpstreamTimeout, "stopped sending for more than 1 s", 1),
]


@pytest.mark.parametrize(
    ("mode", "error_class", "detail_words", "requests"), FAULTS, ids=[f[0] for f in FAULTS]
)
async def test_each_fault_maps_to_its_error_quickly_and_without_the_key(
    upstream: FakeUpstream,
    http_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    mode: UpstreamMode,
    error_class: type[UpstreamFailed],
    detail_words: str,
    requests: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.mode = mode
    started = time.monotonic()

    _, error = await collect_until_failure(fast_engine(http_client), ask(openai_bot(upstream.url)))

    assert time.monotonic() - started < BOUNDED
    assert type(error) is error_class
    assert detail_words in error.detail
    assert upstream.request_count == requests
    assert upstream.last_headers["authorization"] == f"Bearer {SECRET_KEY}"  # it was sent
    assert_no_secret(error, caplog.text)


async def test_a_refused_key_is_redacted_from_the_upstream_message(
    upstream: FakeUpstream, http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.mode = "status_401"  # whose message echoes the key it received, as OpenAI's does
    caplog.set_level(logging.WARNING)
    _, error = await collect_until_failure(fast_engine(http_client), ask(openai_bot(upstream.url)))

    # The upstream's words go to the operator's log only, redacted; the detail is ours.
    assert "Incorrect API key provided: [redacted]" in caplog.text
    assert "Incorrect API key" not in error.detail
    assert "HTTP 401" in error.detail
    assert KEY_VARIABLE in error.detail
    assert_no_secret(error, caplog.text)


@pytest.mark.parametrize(
    "mode", ["invalid_json", "cut_stream", "drop_connection", "error_event", "slow_between_chunks"]
)
async def test_never_retries_once_the_reply_has_started(
    upstream: FakeUpstream, http_client: httpx.AsyncClient, mode: UpstreamMode
) -> None:
    upstream.mode = mode
    texts, _ = await collect_until_failure(
        fast_engine(http_client, max_retries=5), ask(openai_bot(upstream.url))
    )

    assert texts == ["Echo: "]  # what came before the break was passed on
    assert upstream.request_count == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_retries_transient_failures_before_the_first_byte(
    upstream: FakeUpstream, http_client: httpx.AsyncClient, status: int
) -> None:
    upstream.fail_first(2, status=status)
    text, _ = await collect(fast_engine(http_client), ask(openai_bot(upstream.url), "again"))

    assert text == "Echo: again"
    assert upstream.request_count == 3


async def test_retries_are_bounded_and_back_off_exponentially(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.fail_first(10, status=500)
    engine = fast_engine(http_client, max_retries=3, backoff_seconds=0.05)
    started = time.monotonic()

    _, error = await collect_until_failure(engine, ask(openai_bot(upstream.url)))

    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2
    assert upstream.request_count == 4
    assert "HTTP 500" in error.detail
    assert "after 4 attempts" in error.detail


async def test_does_not_retry_when_retries_are_off(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.fail_first(1, status=503)
    await collect_until_failure(
        fast_engine(http_client, max_retries=0), ask(openai_bot(upstream.url))
    )

    assert upstream.request_count == 1


async def test_does_not_retry_other_client_errors(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.fail_first(1, status=404)
    _, error = await collect_until_failure(fast_engine(http_client), ask(openai_bot(upstream.url)))

    assert "HTTP 404" in error.detail
    assert upstream.request_count == 1


async def test_honours_retry_after(upstream: FakeUpstream, http_client: httpx.AsyncClient) -> None:
    upstream.fail_first(1, status=429, retry_after="1")
    started = time.monotonic()

    text, _ = await collect(fast_engine(http_client), ask(openai_bot(upstream.url), "later"))

    assert time.monotonic() - started >= 0.95
    assert text == "Echo: later"
    assert upstream.request_count == 2


async def test_gives_up_at_once_when_retry_after_exceeds_the_cap(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.fail_first(1, status=429, retry_after="30")
    started = time.monotonic()

    _, error = await collect_until_failure(fast_engine(http_client), ask(openai_bot(upstream.url)))

    assert time.monotonic() - started < BOUNDED
    assert "HTTP 429" in error.detail
    assert "30 s" in error.detail
    assert upstream.request_count == 1


async def test_the_total_timeout_bounds_the_whole_reply(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.mode = "slow_first_byte"
    engine = fast_engine(http_client, first_byte_timeout=30, total_timeout=0.3)
    started = time.monotonic()

    _, error = await collect_until_failure(engine, ask(openai_bot(upstream.url)))

    assert time.monotonic() - started < BOUNDED
    assert type(error) is UpstreamTimeout
    assert "within 0.3 s" in error.detail


async def test_a_bots_timeout_seconds_replaces_the_engine_waits(
    upstream: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    upstream.mode = "slow_between_chunks"
    engine = fast_engine(http_client, first_byte_timeout=30, read_timeout=30)
    started = time.monotonic()

    _, error = await collect_until_failure(
        engine, ask(openai_bot(upstream.url, timeout_seconds=0.2))
    )

    assert time.monotonic() - started < BOUNDED
    assert type(error) is UpstreamTimeout
    assert "0.2 s" in error.detail


async def test_a_refused_connection_fails_quickly(http_client: httpx.AsyncClient) -> None:
    bot = openai_bot(f"http://127.0.0.1:{closed_port()}/v1")
    started = time.monotonic()

    _, error = await collect_until_failure(fast_engine(http_client), ask(bot))

    assert time.monotonic() - started < BOUNDED
    assert type(error) is UpstreamFailed
    assert "could not connect" in error.detail
    assert_no_secret(error)


@pytest.mark.parametrize("mode", ["ok", "slow_between_chunks", "slow_first_chunk"])
async def test_abandoned_and_failed_replies_give_their_connection_back(
    upstream: FakeUpstream, mode: UpstreamMode
) -> None:
    """With a pool of one connection, a leaked response would starve the next request."""
    upstream.mode = mode
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        engine = fast_engine(client)
        async with contextlib.aclosing(engine.reply(ask(openai_bot(upstream.url)))) as replies:
            with contextlib.suppress(UpstreamTimeout):
                await anext(replies)  # a first chunk (then we walk away), or the failure

        upstream.mode = "ok"
        text, _ = await collect(engine, ask(openai_bot(upstream.url), "next"))

    assert text == "Echo: next"


# --- configuration and the shared client ----------------------------------------------------------


def test_validate_openai_config_normalises() -> None:
    config = validate_openai_config(
        {
            "base_url": " https://api.example.com/v1/ ",
            "model": " gpt-4o-mini ",
            "temperature": 1,
            "max_tokens": 256,
            "api_key_env": "OPENAI_API_KEY",
            "context_entries": 0,
            "timeout_seconds": 20,
            "max_tokens_unused": None,  # None counts as absent, even for unknown names
        },
        offered_keys=("OPENAI_API_KEY",),
    )

    assert config == {
        "base_url": "https://api.example.com/v1",
        "model": "gpt-4o-mini",
        "temperature": 1.0,
        "max_tokens": 256,
        "api_key_env": "OPENAI_API_KEY",
        "context_entries": 0,
        "timeout_seconds": 20.0,
    }


def test_validate_openai_config_keeps_optional_keys_absent() -> None:
    assert validate_openai_config({"base_url": "http://localhost:11434/v1", "model": "llama3"}) == {
        "base_url": "http://localhost:11434/v1",
        "model": "llama3",
    }


GOOD = {"base_url": "http://localhost:11434/v1", "model": "llama3"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {**GOOD, "api_key": "sk-x"},
            "unknown engine_config key(s) for the openai engine: api_key",
        ),
        ({"model": "llama3"}, "base_url is required"),
        ({**GOOD, "base_url": "ftp://example.com"}, "http:// or https://"),
        ({**GOOD, "base_url": "https://"}, "with a host"),
        ({**GOOD, "base_url": "https://user:pw@example.com/v1"}, "must not contain credentials"),
        ({**GOOD, "base_url": "https://example.com/v1?x=1"}, "query string"),
        ({**GOOD, "base_url": "http://localhost:99999/v1"}, "not a valid URL"),
        ({**GOOD, "base_url": 42}, "base_url is required"),
        ({"base_url": GOOD["base_url"]}, "model is required"),
        ({**GOOD, "model": "  "}, "model is required"),
        ({**GOOD, "model": "m" * 201}, "at most 200"),
        ({**GOOD, "temperature": 2.5}, "temperature must be a number from 0 to 2"),
        ({**GOOD, "temperature": -0.1}, "temperature"),
        ({**GOOD, "temperature": True}, "temperature"),
        ({**GOOD, "temperature": "1"}, "temperature"),
        ({**GOOD, "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({**GOOD, "max_tokens": 1.5}, "max_tokens"),
        ({**GOOD, "api_key_env": "openai_api_key"}, "api_key_env must be the name of"),
        ({**GOOD, "api_key_env": "sk-abc123"}, "api_key_env"),
        ({**GOOD, "api_key_env": "1KEY"}, "api_key_env"),
        ({**GOOD, "context_entries": 21}, "context_entries must be an integer from 0 to 20"),
        ({**GOOD, "context_entries": -1}, "context_entries"),
        ({**GOOD, "timeout_seconds": 0}, "timeout_seconds must be a number greater than 0"),
        ({**GOOD, "timeout_seconds": float("nan")}, "timeout_seconds"),
        ({**GOOD, "timeout_seconds": 601}, "at most 600"),
    ],
)
def test_validate_openai_config_refuses(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_openai_config(config)


def test_validate_openai_config_refuses_a_non_object() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        validate_openai_config(["base_url"])  # type: ignore[arg-type]


async def test_build_http_client_is_bounded_and_does_not_follow_redirects() -> None:
    async with build_http_client() as client:
        assert client.timeout.connect == 5.0
        assert client.timeout.read == 60.0
        assert client.timeout.pool == 5.0
        assert client.follow_redirects is False


async def test_the_engine_refuses_unbounded_waits(http_client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="timeout"):
        fast_engine(http_client, read_timeout=float("inf"))
    with pytest.raises(ValueError, match="max_retries"):
        fast_engine(http_client, max_retries=-1)


# --- the fake itself speaks the protocol (so the engine tests above mean something) --------------


def test_the_fake_answers_the_official_client_blocking_and_streaming(
    upstream: FakeUpstream,
) -> None:
    client = openai.OpenAI(base_url=upstream.url, api_key="not-a-real-key", max_retries=0)

    completion = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "ping pong"}]
    )
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "ping pong"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert completion.choices[0].message.content == "Echo: ping pong"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5
    assert streamed == "Echo: ping pong"
    assert upstream.request_count == 2
    assert upstream.requests[0].body.get("stream") in (None, False)
    assert upstream.requests[1].body["stream"] is True
