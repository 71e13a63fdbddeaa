"""An upstream that only sends SSE keep-alives cannot hold a reply open past `timeout_seconds`.

The hole: the first-byte and between-chunks waits were reset by any byte, so `: ping` every
second kept a reply (and its connection and worker slot) open until the 300 s total limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from adapters.engines.openai import OpenAICompatibleEngine, build_http_client
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed, UpstreamTimeout
from application.ports import ReplyChunk, ReplyRequest
from domain.bots import Bot, EngineKind
from tests.api.conftest import make_app, sign_up
from tests.factories import BotFactory
from tests.fake_upstream import FakeUpstream, UpstreamMode

pytestmark = pytest.mark.security

PINGING_FOR = 15.0  # how long the fake keeps pinging; the reply must end long before
WITHIN = 4.0  # timeout_seconds=1 plus generous slack for a busy machine


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(slow_seconds=PINGING_FOR, ping_seconds=0.3) as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> FakeUpstream:
    running_upstream.reset()
    return running_upstream


def bot_at(base_url: str) -> Bot:
    bot: Bot = BotFactory.build(
        engine=EngineKind.OPENAI,
        engine_config={"base_url": base_url, "model": "m", "timeout_seconds": 1},
    )
    return bot


@pytest.mark.parametrize(
    ("mode", "before_failing", "detail"),
    [
        ("keepalive_only", [], "did not start answering within 1 s"),
        ("keepalive_after_first_chunk", ["Echo: "], "stopped sending for more than 1 s"),
    ],
)
async def test_keepalives_do_not_extend_the_waits(
    upstream: FakeUpstream, mode: UpstreamMode, before_failing: list[str], detail: str
) -> None:
    upstream.mode = mode
    texts: list[str] = []
    started = time.monotonic()
    async with build_http_client(OutboundPolicy(allow_private=True)) as client:
        engine = OpenAICompatibleEngine(client, max_retries=0)
        request = ReplyRequest(bot=bot_at(upstream.url), history=[], message="hello there")
        with pytest.raises(UpstreamFailed) as raised:
            async for event in engine.reply(request):
                assert isinstance(event, ReplyChunk)
                texts.append(event.text)

    assert time.monotonic() - started < WITHIN
    assert type(raised.value) is UpstreamTimeout
    assert detail in raised.value.detail
    assert texts == before_failing


@pytest.fixture
def app(database_url: str, sql_engine: object) -> FastAPI:
    return make_app(database_url, outbound_allow_private=True)  # the fake is on 127.0.0.1


async def test_a_pinging_upstream_answers_504_within_seconds(
    client: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    member = await sign_up(client, "member@example.com")
    bot = await client.post(
        "/api/v1/bots",
        json={
            "name": "Pinger",
            "engine": "openai",
            "engine_config": {"base_url": upstream.url, "model": "m", "timeout_seconds": 1},
        },
        headers=member.headers,
    )
    conversation = await client.post(
        f"/api/v1/bots/{bot.json()['id']}/conversations", json={}, headers=member.headers
    )
    upstream.mode = "keepalive_only"
    started = time.monotonic()

    reply = await client.post(
        f"/api/v1/conversations/{conversation.json()['id']}/messages",
        json={"content": "hello"},
        headers=member.headers,
    )

    assert time.monotonic() - started < WITHIN
    assert reply.status_code == 504, reply.text
