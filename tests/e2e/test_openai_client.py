"""The official `openai` Python client against our `/v1` surface, over real sockets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.databases import sqlite_database
from tests.e2e.conftest import RunningServer, run_server

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
ANSWER = "We are open from 9 to 5, Monday to Friday."


def _sign_up(http: httpx.Client) -> dict[str, str]:
    email = f"oa-{uuid.uuid4().hex[:8]}@example.com"
    http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "OA"},
    ).raise_for_status()
    token = http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _knowledge_bot(http: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    bot: dict[str, Any] = http.post(
        "/api/v1/bots", json={"name": "Shop", "greeting": "Hi!"}, headers=auth
    ).json()
    http.post(
        f"/api/v1/bots/{bot['id']}/knowledge",
        json={
            "question": "What are your opening hours?",
            "answer": ANSWER,
            "examples": ["when are you open", "opening times"],
        },
        headers=auth,
    ).raise_for_status()
    http.post(f"/api/v1/bots/{bot['id']}/publish", headers=auth).raise_for_status()
    return bot


@pytest.fixture
def world(http: httpx.Client, server: RunningServer) -> dict[str, Any]:
    auth = _sign_up(http)
    bot = _knowledge_bot(http, auth)
    key = http.post(f"/api/v1/bots/{bot['id']}/api-keys", headers=auth).json()["key"]
    return {"token": auth["Authorization"].split()[1], "bot": bot, "key": key, "auth": auth}


def _client(server: RunningServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=api_key, max_retries=0)


@pytest.mark.parametrize("credential", ["token", "key"])
def test_blocking_and_streaming(
    server: RunningServer, world: dict[str, Any], credential: str
) -> None:
    client = _client(server, world[credential])
    models = [m.id for m in client.models.list()]
    assert world["bot"]["id"] in models

    completion = client.chat.completions.create(
        model=world["bot"]["id"],
        messages=[{"role": "user", "content": "when are you open?"}],
    )
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"

    stream = client.chat.completions.create(
        model=world["bot"]["id"],
        messages=[{"role": "user", "content": "opening times"}],
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == ANSWER


def test_a_call_continues_a_stored_conversation(
    server: RunningServer, world: dict[str, Any], http: httpx.Client
) -> None:
    client = _client(server, world["token"])
    raw = client.chat.completions.with_raw_response.create(
        model=world["bot"]["id"], messages=[{"role": "user", "content": "hello"}]
    )
    conversation_id = raw.headers["x-conversation-id"]
    client.chat.completions.create(
        model=world["bot"]["id"],
        messages=[{"role": "user", "content": "opening times"}],
        extra_headers={"X-Conversation-Id": conversation_id},
    )
    messages = http.get(
        f"/api/v1/conversations/{conversation_id}/messages", headers=world["auth"]
    ).json()["items"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["hello", "opening times"]


def test_errors_use_the_openai_envelope(server: RunningServer, world: dict[str, Any]) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(server, "not-a-token").models.list()
    client = _client(server, world["token"])
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model=str(uuid.uuid4()), messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model=world["bot"]["id"], messages=[{"role": "assistant", "content": "hi"}]
        )


# Every upstream in these tests listens on 127.0.0.1, which a server reaches only if its
# operator allows private addresses (or lists the host).
ALLOW_PRIVATE = {"CHATBOTS_OUTBOUND_ALLOW_PRIVATE": "true"}


@pytest.fixture(scope="module")
def upstream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Serves knowledge bots on /v1 to the other server, and `openai` bots from local fakes."""
    directory: Path = tmp_path_factory.mktemp("chain-upstream")
    with (
        sqlite_database(directory) as url,
        run_server(url, directory / "server.log", ALLOW_PRIVATE) as server,
    ):
        yield server


def test_an_openai_engine_bot_chained_to_our_own_v1(
    upstream_server: RunningServer, tmp_path: Path
) -> None:
    """Server A serves a knowledge bot on /v1; server B's `openai`-engine bot uses A as its
    upstream, with A's bot API key from B's environment, which B's operator offers; B's
    operator also lists A's host:port as an allowed outbound host."""
    with httpx.Client(base_url=upstream_server.base_url, timeout=30) as a:
        auth_a = _sign_up(a)
        knowledge_bot = _knowledge_bot(a, auth_a)
        key = a.post(f"/api/v1/bots/{knowledge_bot['id']}/api-keys", headers=auth_a).json()["key"]

    with (
        sqlite_database(tmp_path) as url,
        run_server(
            url,
            tmp_path / "b.log",
            {
                "CHAIN_UPSTREAM_KEY": key,
                "CHATBOTS_UPSTREAM_KEYS": "CHAIN_UPSTREAM_KEY",
                "CHATBOTS_OUTBOUND_ALLOWED_HOSTS": upstream_server.base_url.removeprefix("http://"),
            },
        ) as server_b,
        httpx.Client(base_url=server_b.base_url, timeout=30) as b,
    ):
        auth_b = _sign_up(b)
        llm_bot = b.post(
            "/api/v1/bots",
            json={
                "name": "Relay",
                "engine": "openai",
                "engine_config": {
                    "base_url": f"{upstream_server.base_url}/v1",
                    "model": knowledge_bot["id"],
                    "api_key_env": "CHAIN_UPSTREAM_KEY",
                },
            },
            headers=auth_b,
        ).json()
        conversation = b.post(
            f"/api/v1/bots/{llm_bot['id']}/conversations", json={}, headers=auth_b
        ).json()
        reply = b.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "when are you open?"},
            headers=auth_b,
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["reply"]["content"] == ANSWER
        assert reply.json()["reply"]["metadata"]["engine"] == "openai"
        assert key not in reply.text
        assert key not in server_b.log()


def test_a_reply_is_stored_even_if_the_streaming_client_goes_away(
    upstream_server: RunningServer,
) -> None:
    import time

    from tests.fake_upstream import FakeUpstream

    with (
        FakeUpstream(slow_seconds=0.3) as upstream,
        httpx.Client(base_url=upstream_server.base_url, timeout=30) as http,
    ):
        auth = _sign_up(http)
        upstream.mode = "slow_between_chunks"
        bot = http.post(
            "/api/v1/bots",
            json={
                "name": "Slow LLM",
                "engine": "openai",
                "engine_config": {"base_url": upstream.url, "model": "m", "timeout_seconds": 5},
            },
            headers=auth,
        ).json()
        conversation = http.post(
            f"/api/v1/bots/{bot['id']}/conversations", json={}, headers=auth
        ).json()
        url = f"/api/v1/conversations/{conversation['id']}/messages"
        with http.stream(
            "POST",
            url,
            json={"content": "one two three four five six"},
            headers={**auth, "Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 201
            next(response.iter_lines())  # the first event arrived; now hang up
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            items = http.get(url, headers=auth).json()["items"]
            if len(items) == 2:
                break
            time.sleep(0.3)
        assert [m["role"] for m in items] == ["user", "assistant"]
        assert items[1]["content"] == "Echo: one two three four five six"
