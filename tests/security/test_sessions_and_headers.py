"""Sessions end when they should; answers carry the headers a hardened API sends."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.api.conftest import (
    PASSWORD,
    TEST_SECRET,
    client_for,
    make_admin,
    make_app,
    sign_in,
    sign_up,
)

pytestmark = pytest.mark.security


async def test_a_password_change_ends_every_access_token_at_once(
    client: httpx.AsyncClient,
) -> None:
    ada = await sign_up(client, "ada@example.com")
    other_session = await sign_in(client, "ada@example.com")
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a new horse battery"},
        headers=ada.headers,
    )
    assert changed.status_code == 204
    for session in (ada, other_session):
        response = await client.get("/api/v1/users/me", headers=session.headers)
        assert response.status_code == 401
    fresh = await sign_in(client, "ada@example.com", "a new horse battery")
    assert (await client.get("/api/v1/users/me", headers=fresh.headers)).status_code == 200


async def test_token_and_key_secrets_are_never_cached(client: httpx.AsyncClient) -> None:
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"},
    )
    token = await client.post(
        "/api/v1/auth/token", data={"username": "ada@example.com", "password": PASSWORD}
    )
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": token.json()["refresh_token"]}
    )
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    bot = await client.post("/api/v1/bots", json={"name": "Shop"}, headers=headers)
    key = await client.post(f"/api/v1/bots/{bot.json()['id']}/api-keys", headers=headers)
    for response in (registered, token, refreshed, key):
        assert response.status_code in (200, 201), response.text
        assert response.headers["cache-control"] == "no-store"


async def test_a_deactivated_owners_bot_keys_stop_working(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await sign_up(client, "admin@example.com")
    await make_admin(app, "admin@example.com")
    admin = await sign_in(client, "admin@example.com")
    member = await sign_up(client, "member@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "Shop"}, headers=member.headers)).json()
    key = (await client.post(f"/api/v1/bots/{bot['id']}/api-keys", headers=member.headers)).json()
    as_key = {"Authorization": f"Bearer {key['key']}"}
    assert (await client.get("/v1/models", headers=as_key)).status_code == 200
    member_id = (await client.get("/api/v1/users/me", headers=member.headers)).json()["id"]
    deactivated = await client.patch(
        f"/api/v1/users/{member_id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200
    assert (await client.get("/v1/models", headers=as_key)).status_code == 401


async def test_a_signed_token_with_an_absurd_expiry_is_refused(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ada@example.com")
    now = int(time.time())
    claims = {
        "iss": "chatbots",
        "aud": "chatbots-api",
        "sub": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": 1e300,
        "jti": uuid.uuid4().hex,
        "role": "admin",
        "gen": 0,
    }
    token = jwt.encode(
        {"alg": "HS256", "typ": "at+jwt"}, claims, OctKey.import_key(TEST_SECRET), ["HS256"]
    )
    response = await client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_every_answer_carries_hardening_headers(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/v1/bots", "/docs", "/no-such-route"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
    docs = await client.get("/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    assert "cdn.jsdelivr.net" not in docs.text  # the pages' files come from this process
    assert (await client.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200


async def test_a_trailing_slash_is_not_redirected_to_the_callers_host(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/bots/", headers={"Host": "attacker.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


async def test_docs_can_be_turned_off(database_url: str, sql_engine: object) -> None:
    async for client in client_for(make_app(database_url, docs_enabled=False)):
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.get("/healthz")).status_code == 200


FULL_WIDTH_EMAIL = "\uff41\uff44\uff41@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
FULL_WIDTH_CAPITALS = "\uff21\uff24\uff21@example.com"


async def test_emails_that_differ_only_by_full_width_letters_are_one_account(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client, "ada@example.com")
    duplicate = await client.post(
        "/api/v1/auth/register",
        json={"email": FULL_WIDTH_EMAIL, "password": PASSWORD, "display_name": "Ada"},
    )
    assert duplicate.status_code == 409
    signed_in = await client.post(
        "/api/v1/auth/token", data={"username": FULL_WIDTH_CAPITALS, "password": PASSWORD}
    )
    assert signed_in.status_code == 200
