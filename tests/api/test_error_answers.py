"""Every error a client can provoke has a specific `type` and a sentence for a `detail`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import PASSWORD, ApiUser, sign_up

pytestmark = pytest.mark.integration


def _problem(response: httpx.Response, status: int, type_: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == type_, body
    detail = str(body["detail"])
    assert detail[0].isupper(), detail
    assert detail.endswith("."), detail
    return body


@pytest.fixture
async def member(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "member@example.com")


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    _problem(await client.get("/api/v1/nope"), 404, "/problems/route-not-found")
    wrong = await client.put("/api/v1/auth/token")
    body = _problem(wrong, 405, "/problems/method-not-allowed")
    assert "POST" in str(body["detail"])
    assert wrong.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"email": "\xff\xfe"}', b'{"email": '],
    ids=["deeply nested", "invalid UTF-8", "truncated"],
)
async def test_unparsable_json_is_a_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=content, headers={"Content-Type": "application/json"}
    )
    _problem(response, 400, "/problems/malformed-body")


async def test_a_chunked_body_over_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65_536

    response = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _problem(response, 413, "/problems/body-too-large")


async def test_a_json_route_names_the_media_type_it_takes(
    client: httpx.AsyncClient, member: ApiUser
) -> None:
    response = await client.post(
        "/api/v1/bots",
        content=b"name=Shop",
        headers={**member.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = _problem(response, 415, "/problems/unsupported-media-type")
    assert "application/json" in str(body["detail"])
    plain = await client.post(
        "/api/v1/bots",
        content=b'{"name": "Shop"}',
        headers={**member.headers, "Content-Type": "text/plain"},
    )
    _problem(plain, 415, "/problems/unsupported-media-type")


async def test_the_token_route_says_it_wants_form_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/token", json={"username": "member@example.com", "password": PASSWORD}
    )
    body = _problem(response, 415, "/problems/unsupported-media-type")
    assert "form fields" in str(body["detail"])


async def test_another_authorization_scheme_is_named(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me", headers={"Authorization": "Token abc"})
    body = _problem(response, 401, "/problems/unauthenticated")
    assert "Bearer" in str(body["detail"])


async def test_an_unknown_v1_route_is_not_an_unknown_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


async def test_a_whitespace_only_message_is_refused(
    client: httpx.AsyncClient, member: ApiUser
) -> None:
    bot = (await client.post("/api/v1/bots", json={"name": "Shop"}, headers=member.headers)).json()
    conversation = (
        await client.post(f"/api/v1/bots/{bot['id']}/conversations", headers=member.headers)
    ).json()
    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": " \n\t "},
        headers=member.headers,
    )
    _problem(response, 422, "/problems/validation-error")
