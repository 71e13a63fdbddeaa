"""Every `/api/v1/auth` and `/api/v1/users` route and error code, over SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import PASSWORD, make_admin, sign_in, sign_up

pytestmark = pytest.mark.integration


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


async def test_register(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": " Ada@Example.com ", "password": PASSWORD, "display_name": "Ada"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["role"] == "member"
    assert "password" not in response.text
    assert "argon2" not in response.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "ada@example.com", "password": "short", "display_name": "A"}, "password"),
        ({"email": "ada@example.com", "password": "x" * 129, "display_name": "A"}, "password"),
        ({"email": "not-an-email", "password": PASSWORD, "display_name": "A"}, "email"),
        ({"email": "ada@example.com", "password": PASSWORD, "display_name": ""}, "display_name"),
        ({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "x": 1}, "x"),
        ({"password": PASSWORD, "display_name": "A"}, "email"),
    ],
)
async def test_register_validation(
    client: httpx.AsyncClient, payload: dict[str, object], field: str
) -> None:
    body = assert_problem(await client.post("/api/v1/auth/register", json=payload), 422)
    assert any(field in error["loc"] for error in body["errors"])  # type: ignore[attr-defined]


async def test_register_duplicate_is_409(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ada@example.com")
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ADA@example.com", "password": PASSWORD, "display_name": "Ada"},
    )
    assert_problem(response, 409)


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"email": ',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400)


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"email": "' + b"a" * (3 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413)


async def test_token_and_me(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    assert user.tokens["token_type"] == "bearer"
    assert user.tokens["expires_in"] == 900
    me = await client.get("/api/v1/users/me", headers=user.headers)
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"


async def test_wrong_credentials_are_401_alike(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ada@example.com")
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": "ada@example.com", "password": "wrong one"}
    )
    unknown = await client.post(
        "/api/v1/auth/token", data={"username": "who@example.com", "password": PASSWORD}
    )
    assert_problem(wrong, 401)
    assert_problem(unknown, 401)
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_token_form_fields_are_required(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/auth/token", data={"username": "a"}), 422)


async def test_repeated_failures_are_429_with_retry_after(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ada@example.com")
    for _ in range(5):
        await client.post(
            "/api/v1/auth/token", data={"username": "ada@example.com", "password": "wrong one"}
        )
    response = await client.post(
        "/api/v1/auth/token", data={"username": "ada@example.com", "password": PASSWORD}
    )
    assert_problem(response, 429)
    assert int(response.headers["retry-after"]) > 0


async def test_refresh_and_logout(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new_refresh = refreshed.json()["refresh_token"]
    assert (
        await client.post("/api/v1/auth/logout", json={"refresh_token": new_refresh})
    ).status_code == 204
    assert_problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": new_refresh}), 401
    )
    assert_problem(await client.post("/api/v1/auth/refresh", json={}), 422)


async def test_update_me(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    response = await client.patch(
        "/api/v1/users/me", json={"display_name": "Countess"}, headers=user.headers
    )
    assert response.json()["display_name"] == "Countess"
    assert_problem(
        await client.patch("/api/v1/users/me", json={"role": "admin"}, headers=user.headers), 422
    )
    assert_problem(await client.patch("/api/v1/users/me", json={"display_name": "x"}), 401)


async def test_change_password(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "ada@example.com")
    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not it at all", "new_password": "another password"},
        headers=user.headers,
    )
    assert_problem(wrong, 422)
    ok = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another password"},
        headers=user.headers,
    )
    assert ok.status_code == 204
    await sign_in(client, "ada@example.com", "another password")


async def test_admin_routes(client: httpx.AsyncClient, app: FastAPI) -> None:
    member = await sign_up(client, "ada@example.com")
    admin = await sign_up(client, "root@example.com")
    await make_admin(app, "root@example.com")

    assert_problem(await client.get("/api/v1/users", headers=member.headers), 403)
    assert_problem(await client.get("/api/v1/users"), 401)
    listing = await client.get("/api/v1/users?limit=1", headers=admin.headers)
    assert listing.status_code == 200
    assert len(listing.json()["items"]) == 1
    cursor = listing.json()["next_cursor"]
    rest = await client.get(f"/api/v1/users?limit=1&cursor={cursor}", headers=admin.headers)
    assert rest.json()["next_cursor"] is None
    assert_problem(await client.get("/api/v1/users?cursor=garbage", headers=admin.headers), 400)
    assert_problem(await client.get("/api/v1/users?limit=1000", headers=admin.headers), 422)

    me = (await client.get("/api/v1/users/me", headers=member.headers)).json()
    url = f"/api/v1/users/{me['id']}"
    assert_problem(await client.patch(url, json={"is_active": False}, headers=member.headers), 403)
    assert_problem(await client.patch(url, json={"role": "owner"}, headers=admin.headers), 422)
    assert_problem(
        await client.patch(
            "/api/v1/users/00000000-0000-0000-0000-000000000000",
            json={"is_active": False},
            headers=admin.headers,
        ),
        404,
    )
    deactivated = await client.patch(url, json={"is_active": False}, headers=admin.headers)
    assert deactivated.json()["is_active"] is False
    assert_problem(await client.get("/api/v1/users/me", headers=member.headers), 401)

    admin_me = (await client.get("/api/v1/users/me", headers=admin.headers)).json()
    last_admin = await client.patch(
        f"/api/v1/users/{admin_me['id']}", json={"role": "member"}, headers=admin.headers
    )
    assert_problem(last_admin, 409)


async def test_throttling_is_shared_between_workers_through_redis(
    database_url: str, sql_engine: object
) -> None:
    """Two app instances (two workers) with one Redis: failures on one throttle the other."""
    import uuid

    from tests.api.conftest import client_for, make_app

    redis_url = "redis://127.0.0.1:6379/15"
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    # Built one after the other: wiring binds routes to the most recently built container.
    # Registrations are counted in Redis too, and those counters outlive the test.
    first = make_app(database_url, redis_url=redis_url, register_max_per_address=1_000_000)
    async for client_a in client_for(first):
        await sign_up(client_a, email)
        for _ in range(5):
            await client_a.post(
                "/api/v1/auth/token", data={"username": email, "password": "wrong one"}
            )
    second = make_app(database_url, redis_url=redis_url)
    async for client_b in client_for(second):
        response = await client_b.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert_problem(response, 429)
    import redis.asyncio

    cleanup = redis.asyncio.Redis.from_url(redis_url)
    # Only this test's keys: other tests (and xdist workers) share the Redis server.
    await cleanup.delete(
        f"chatbots:attempts:login:account:{email}", "chatbots:attempts:login:address:127.0.0.1"
    )
    await cleanup.aclose()
