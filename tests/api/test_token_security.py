"""Every way an access or refresh token must be refused: 401 problem+json, WWW-Authenticate."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.api.conftest import PASSWORD, TEST_SECRET, sign_in, sign_up

pytestmark = pytest.mark.integration


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "chatbots",
        "aud": "chatbots-api",
        "sub": user_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "role": "member",
        "gen": 0,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], secret: str = TEST_SECRET, alg: str = "HS256") -> str:
    header = {"alg": alg, "typ": "at+jwt"}
    return jwt.encode(header, claims, OctKey.import_key(secret), algorithms=[alg])


async def _assert_rejected(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
async def user_id(client: httpx.AsyncClient) -> str:
    user = await sign_up(client, "ada@example.com")
    me = await client.get("/api/v1/users/me", headers=user.headers)
    assert me.status_code == 200
    return str(me.json()["id"])


async def test_a_well_formed_forged_token_is_accepted_only_with_our_key(
    client: httpx.AsyncClient, user_id: str
) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {_sign(_claims(user_id))}"}
    )
    assert response.status_code == 200  # the baseline the rejections below depart from


async def test_missing_and_malformed_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    await _assert_rejected(client, "not-a-jwt")
    await _assert_rejected(client, "a.b.c")


async def test_alg_none(client: httpx.AsyncClient, user_id: str) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(_claims(user_id))}."
    await _assert_rejected(client, token)


async def test_another_key(client: httpx.AsyncClient, user_id: str) -> None:
    await _assert_rejected(client, _sign(_claims(user_id), secret="another-key-" * 4))


async def test_another_algorithm(client: httpx.AsyncClient, user_id: str) -> None:
    await _assert_rejected(client, _sign(_claims(user_id), alg="HS512"))


async def test_tampered_payload(client: httpx.AsyncClient, user_id: str) -> None:
    header, _, signature = _sign(_claims(user_id)).split(".")
    tampered = _b64(_claims(user_id, role="admin"))
    await _assert_rejected(client, f"{header}.{tampered}.{signature}")


async def test_expired(client: httpx.AsyncClient, user_id: str) -> None:
    past = int(time.time()) - 3600
    await _assert_rejected(client, _sign(_claims(user_id, iat=past, nbf=past, exp=past + 60)))


async def test_not_yet_valid(client: httpx.AsyncClient, user_id: str) -> None:
    future = int(time.time()) + 3600
    await _assert_rejected(client, _sign(_claims(user_id, nbf=future, exp=future + 60)))
    await _assert_rejected(client, _sign(_claims(user_id, iat=future, exp=future + 60)))


async def test_wrong_issuer(client: httpx.AsyncClient, user_id: str) -> None:
    await _assert_rejected(client, _sign(_claims(user_id, iss="someone-else")))


async def test_wrong_audience(client: httpx.AsyncClient, user_id: str) -> None:
    await _assert_rejected(client, _sign(_claims(user_id, aud="another-api")))


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud", "jti", "role", "nbf"])
async def test_missing_claim(client: httpx.AsyncClient, user_id: str, claim: str) -> None:
    await _assert_rejected(client, _sign(_claims(user_id, **{claim: None})))


async def test_wrong_token_type(client: httpx.AsyncClient, user_id: str) -> None:
    token = jwt.encode(
        {"alg": "HS256", "typ": "JWT"},
        _claims(user_id),
        OctKey.import_key(TEST_SECRET),
        algorithms=["HS256"],
    )
    await _assert_rejected(client, token)


async def test_unknown_user(client: httpx.AsyncClient) -> None:
    await _assert_rejected(client, _sign(_claims(str(uuid.uuid4()))))


async def test_deactivated_user(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_up(client, "ada@example.com")
    admin = await sign_up(client, "root@example.com")
    from tests.api.conftest import make_admin

    await make_admin(app, "root@example.com")
    me = (await client.get("/api/v1/users/me", headers=user.headers)).json()
    await client.patch(
        f"/api/v1/users/{me['id']}", json={"is_active": False}, headers=admin.headers
    )
    await _assert_rejected(client, str(user.tokens["access_token"]))
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]}
    )
    assert refresh.status_code == 401


async def _refresh(client: httpx.AsyncClient, token: object) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_reused_refresh_token_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    first = user.tokens["refresh_token"]
    rotated = await _refresh(client, first)
    assert rotated.status_code == 200
    reused = await _refresh(client, first)
    assert reused.status_code == 401
    assert reused.headers["www-authenticate"] == "Bearer"
    assert reused.headers["content-type"] == "application/problem+json"
    assert (await _refresh(client, rotated.json()["refresh_token"])).status_code == 401


async def test_refresh_after_logout(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    token = user.tokens["refresh_token"]
    await client.post("/api/v1/auth/logout", json={"refresh_token": token})
    response = await _refresh(client, token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_after_password_change(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    other_session = await sign_in(client, "ada@example.com")
    await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "brand new password"},
        headers=user.headers,
    )
    for session in (user, other_session):
        response = await _refresh(client, session.tokens["refresh_token"])
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
