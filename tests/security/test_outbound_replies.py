"""A bot's base_url cannot reach the server's network, nor tell one internal target from another.

The hole: any member could point a bot at 127.0.0.1:<port>, 10.x or 169.254.169.254, and read
from distinct 502 details which ports are open, and an internal service's error text came back
in the detail.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from adapters.engines.openai import (
    ADDRESS_REFUSED,
    OpenAICompatibleEngine,
    build_http_client,
)
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed
from application.ports import ReplyRequest
from domain.bots import Bot, EngineKind
from tests.api.conftest import ApiUser, sign_up
from tests.factories import BotFactory
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.security

UPSTREAM_ERROR_TEXT = "The server had an error while processing your request"


@pytest.fixture(scope="module")
def internal_service() -> Iterator[FakeUpstream]:
    """An HTTP server on loopback that answers 500 with a body, like an internal service."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def failing_service(internal_service: FakeUpstream) -> FakeUpstream:
    internal_service.reset()
    internal_service.mode = "status_500"
    return internal_service


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def hanging_up_port() -> AsyncIterator[int]:
    """Something that is not an HTTP server: it accepts, then closes without a word."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def reply_problem(member: ApiUser, base_url: str) -> dict[str, Any]:
    bot = await member.client.post(
        "/api/v1/bots",
        json={
            "name": "Scanner",
            "engine": "openai",
            "engine_config": {"base_url": base_url, "model": "m", "timeout_seconds": 2},
        },
        headers=member.headers,
    )
    assert bot.status_code == 201, bot.text
    conversation = await member.client.post(
        f"/api/v1/bots/{bot.json()['id']}/conversations", json={}, headers=member.headers
    )
    reply = await member.client.post(
        f"/api/v1/conversations/{conversation.json()['id']}/messages",
        json={"content": "hello"},
        headers=member.headers,
    )
    assert reply.status_code == 502, reply.text
    problem: dict[str, Any] = reply.json()
    return problem


async def test_internal_addresses_get_one_fixed_answer_and_no_request(
    client: httpx.AsyncClient, failing_service: FakeUpstream
) -> None:
    member = await sign_up(client, "member@example.com")
    port = failing_service.port
    targets = [
        failing_service.url,  # open: an HTTP server answering 500 with a body
        f"http://127.0.0.1:{closed_port()}/v1",  # closed
        f"http://localhost:{port}/v1",
        f"http://[::ffff:127.0.0.1]:{port}/v1",
        f"http://2130706433:{port}/v1",
        "http://169.254.169.254/latest",
        "http://10.0.0.1:8080/v1",
    ]

    details = {target: (await reply_problem(member, target))["detail"] for target in targets}

    # Problem details are rendered as sentences.
    assert set(details.values()) == {ADDRESS_REFUSED.capitalize() + "."}, details
    assert failing_service.request_count == 0


# --- with the operator's allowance: reached, but details still tell nothing apart -------------


def bot_at(base_url: str) -> Bot:
    bot: Bot = BotFactory.build(
        engine=EngineKind.OPENAI, engine_config={"base_url": base_url, "model": "m"}
    )
    return bot


async def failure_detail(base_url: str) -> str:
    async with build_http_client(OutboundPolicy(allow_private=True)) as client:
        engine = OpenAICompatibleEngine(client, max_retries=0, first_byte_timeout=2)
        request = ReplyRequest(bot=bot_at(base_url), history=[], message="?")
        with pytest.raises(UpstreamFailed) as raised:
            async for _ in engine.reply(request):
                pass
    return raised.value.detail


async def test_details_carry_no_upstream_text_nor_low_level_reasons(
    failing_service: FakeUpstream, hanging_up_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    answered_500 = await failure_detail(failing_service.url)
    refused = await failure_detail(f"http://127.0.0.1:{closed_port()}/v1")
    hung_up = await failure_detail(f"http://127.0.0.1:{hanging_up_port}/v1")

    assert answered_500 == "the model upstream answered HTTP 500"  # the status may be shown
    assert refused == hung_up == "could not connect to the model upstream"
    assert UPSTREAM_ERROR_TEXT in caplog.text  # the operator's log has what was said
    assert failing_service.request_count == 1
