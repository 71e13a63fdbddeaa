"""Streams that survive proxies: every SSE event has an `id`, and `: keep-alive` comments flow
while an upstream thinks (here a fake one that pauses between its chunks), on our stream and on
the OpenAI-style one, which the official `openai` client still reads as if they were not there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest
from fastapi import FastAPI

from tests.api.conftest import ApiUser, make_app, sign_up
from tests.api.test_conversations_api import history, knowledge_bot, parse_sse, start
from tests.api.test_openai_engine_api import llm_bot
from tests.conftest import clean_engine
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

HEARTBEAT_SECONDS = 0.1
PAUSE_SECONDS = 0.8  # the fake upstream's pause after its first chunk: several heartbeats
KEEP_ALIVE = ": keep-alive"
STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(slow_seconds=PAUSE_SECONDS) as fake:
        yield fake


@pytest.fixture
def thinking_upstream(upstream: FakeUpstream) -> FakeUpstream:
    """Sends its first chunk, then nothing for PAUSE_SECONDS, then the rest."""
    upstream.reset()
    upstream.mode = "slow_between_chunks"
    return upstream


@pytest.fixture
async def app(sqlite_url: str) -> FastAPI:
    await clean_engine(sqlite_url)
    return make_app(
        sqlite_url, outbound_allow_private=True, sse_heartbeat_seconds=HEARTBEAT_SECONDS
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "owner@example.com")


def _blocks(raw: str) -> list[str]:
    return [block for block in raw.split("\n\n") if block]


def _events(raw: str) -> list[str]:
    """The event blocks of a raw stream, comments left out."""
    return [block for block in _blocks(raw) if not block.startswith(":")]


async def _post_streaming(owner: ApiUser, conversation_id: str, content: str) -> httpx.Response:
    return await owner.client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": content},
        headers={**owner.headers, **STREAM},
    )


async def test_heartbeats_flow_while_the_upstream_thinks_and_every_event_has_an_id(
    owner: ApiUser, thinking_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, thinking_upstream.url, timeout_seconds=5)
    conversation = await start(owner, bot["id"])
    response = await _post_streaming(owner, conversation["id"], "one two three")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    blocks = _blocks(response.text)
    heartbeats = [i for i, block in enumerate(blocks) if block == KEEP_ALIVE]
    # 0.8 s of silence at 0.1 s: a handful, whatever a busy machine makes of the timing.
    assert len(heartbeats) >= 3, response.text
    first_event = next(i for i, block in enumerate(blocks) if block.startswith("id:"))
    assert first_event < heartbeats[0], "the first delta came before the silence"
    assert blocks[-1].startswith("id:"), "the stream ends with its `done` event"

    user_message = (await history(owner, conversation["id"]))[-2]
    assert user_message["role"] == "user"
    ids = [re.match(r"id: (\S+)\n", block) for block in _events(response.text)]
    assert all(ids), response.text
    positions = [match[1] for match in ids if match]
    assert positions == [f"{user_message['id']}:{n}" for n in range(1, len(positions) + 1)]
    events = parse_sse("\n\n".join(_events(response.text)))
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1)
    assert events[-1][0] == "done"
    assert events[-1][1]["content"] == "Echo: one two three"


async def test_a_stream_that_never_falls_silent_sends_no_heartbeat(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    response = await _post_streaming(owner, conversation["id"], "when are you open")
    assert response.status_code == 201
    assert KEEP_ALIVE not in response.text
    assert [name for name, _ in parse_sse(response.text)][-1] == "done"


async def test_an_error_event_has_an_id_too(owner: ApiUser, upstream: FakeUpstream) -> None:
    upstream.reset()
    upstream.mode = "cut_stream"
    bot = await llm_bot(owner, upstream.url)
    conversation = await start(owner, bot["id"])
    response = await _post_streaming(owner, conversation["id"], "tell me a story")
    last = _events(response.text)[-1]
    assert re.match(r"id: [0-9a-f-]{36}:\d+\nevent: error\n", last), last


async def _openai_stream_raw(owner: ApiUser, bot_id: str) -> httpx.Response:
    return await owner.client.post(
        "/v1/chat/completions",
        json={
            "model": bot_id,
            "stream": True,
            "messages": [{"role": "user", "content": "four five six"}],
        },
        headers=owner.headers,
    )


async def test_the_openai_stream_gets_heartbeats_too(
    owner: ApiUser, thinking_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, thinking_upstream.url, timeout_seconds=5)
    response = await _openai_stream_raw(owner, bot["id"])
    assert response.status_code == 200, response.text
    blocks = _blocks(response.text)
    assert blocks.count(KEEP_ALIVE) >= 3, response.text
    assert blocks[-1] == "data: [DONE]"


async def test_the_openai_client_reads_a_stream_with_heartbeats(
    owner: ApiUser, thinking_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, thinking_upstream.url, timeout_seconds=5)
    # The official client, on the test's HTTP client: it talks to the app in-process.
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1",
        api_key=owner.headers["Authorization"].removeprefix("Bearer "),
        http_client=owner.client,
        max_retries=0,
    )
    stream = await client.chat.completions.create(
        model=bot["id"],
        messages=[{"role": "user", "content": "seven eight nine"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Echo: seven eight nine"
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The same stream, raw: the heartbeats were there, and the client skipped them.
    raw = await _openai_stream_raw(owner, bot["id"])
    assert KEEP_ALIVE in raw.text
