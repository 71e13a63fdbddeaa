"""One rule for every text input: a NUL or a lone surrogate is a 422, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from domain.text import is_storable, storable
from tests.api.conftest import PASSWORD, ApiUser, sign_up

pytestmark = pytest.mark.security

BAD_TEXT = {"nul": "a\x00b", "lone surrogate": "a\ud800b"}


def _json(payload: dict[str, Any]) -> dict[str, Any]:
    # ensure_ascii writes a lone surrogate as the escape "\ud800", as a hostile client would.
    return {
        "content": json.dumps(payload).encode(),
        "headers": {"Content-Type": "application/json"},
    }


async def _world(client: httpx.AsyncClient) -> tuple[ApiUser, dict[str, str]]:
    owner = await sign_up(client, "owner@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "Shop"}, headers=owner.headers)).json()
    await client.post(f"/api/v1/bots/{bot['id']}/publish", headers=owner.headers)
    conversation = (
        await client.post(f"/api/v1/bots/{bot['id']}/conversations", headers=owner.headers)
    ).json()
    posted = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "hello"},
        headers=owner.headers,
    )
    ids = {
        "bot": bot["id"],
        "conversation": conversation["id"],
        "reply": posted.json()["reply"]["id"],
    }
    return owner, ids


def _cases(bad: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request) for every kind of text input the API takes."""
    url = "http://127.0.0.1:9/v1"
    account = {"email": "a@x.io", "password": PASSWORD, "display_name": "A"}
    upstream = {"name": "B", "engine": "openai"}
    entry = {"question": "q", "answer": "a"}
    chat = {"model": "{bot}", "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        ("POST", "/api/v1/auth/register", _json({**account, "email": f"{bad}@x.io"})),
        ("POST", "/api/v1/auth/register", _json({**account, "password": PASSWORD + bad})),
        ("POST", "/api/v1/auth/register", _json({**account, "display_name": bad})),
        ("POST", "/api/v1/auth/refresh", _json({"refresh_token": bad})),
        ("POST", "/api/v1/bots", _json({"name": bad})),
        ("POST", "/api/v1/bots", _json({**upstream, "engine_config": {bad: 1}})),
        ("POST", "/api/v1/bots", _json({**upstream, "engine_config": {"base_url": url + bad}})),
        (
            "POST",
            "/api/v1/bots",
            _json({**upstream, "engine_config": {"base_url": url, "model": bad}}),
        ),
        ("PATCH", "/api/v1/bots/{bot}", _json({"description": bad})),
        ("POST", "/api/v1/bots/{bot}/knowledge", _json({**entry, "question": bad})),
        ("POST", "/api/v1/bots/{bot}/knowledge", _json({**entry, "examples": [bad]})),
        ("POST", "/api/v1/bots/{bot}/conversations", _json({"title": bad})),
        ("POST", "/api/v1/conversations/{conversation}/messages", _json({"content": bad})),
        ("PATCH", "/api/v1/conversations/{conversation}", _json({"title": bad})),
        ("PUT", "/api/v1/messages/{reply}/feedback", _json({"rating": "up", "comment": bad})),
        ("PATCH", "/api/v1/users/me", _json({"display_name": bad})),
        ("POST", "/v1/chat/completions", _json({**chat, "model": bad})),
        (
            "POST",
            "/v1/chat/completions",
            _json({**chat, "messages": [{"role": "user", "content": bad}]}),
        ),
    ]
    if "\x00" in bad:  # form fields and query strings are UTF-8 bytes: no lone surrogate there
        form = {"username": f"{bad}@x.io", "password": PASSWORD}
        cases.append(("POST", "/api/v1/auth/token", {"data": form}))
        cases.append(("GET", "/api/v1/bots?q=a%00b", {}))
    return cases


@pytest.mark.parametrize("kind", BAD_TEXT)
async def test_unstorable_text_is_refused_everywhere(client: httpx.AsyncClient, kind: str) -> None:
    owner, ids = await _world(client)
    for method, path, request in _cases(BAD_TEXT[kind]):
        filled = path.format(**ids)
        if "content" in request:
            content = request["content"].replace(b"{bot}", ids["bot"].encode())
            request = {**request, "content": content}
        headers = {**request.pop("headers", {}), **owner.headers}
        response = await client.request(method, filled, headers=headers, **request)
        assert response.status_code == 422, (method, path, response.text)
        if filled.startswith("/v1/"):
            assert response.json()["error"]["type"] == "invalid_request_error"
        else:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"][0]["msg"] == (
                "must not contain NUL characters or unpaired surrogates"
            )
    # Nothing above reached the database: the owner's bot is as it was.
    bots = (await client.get("/api/v1/bots", headers=owner.headers)).json()["items"]
    assert [b["name"] for b in bots] == ["Shop"]


async def test_an_echoed_value_always_renders(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "owner@example.com")
    # Not text the rule refuses, but a value the 422 quotes back: it must still be JSON.
    response = await client.post(
        "/api/v1/bots",
        json={"name": "B", "engine": "openai", "engine_config": {"\u2028weird": 1}},
        headers=owner.headers,
    )
    assert response.status_code == 422
    assert response.json()["status"] == 422


def test_text_from_elsewhere_is_made_storable() -> None:
    assert not is_storable("a\x00b")
    assert not is_storable("\udc80")
    assert is_storable("emoji \U0001f600 and ü")
    assert storable("a\x00b\ud800") == "a\ufffdb\ufffd"
