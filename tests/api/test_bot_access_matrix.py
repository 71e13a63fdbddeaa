"""Access control, route by route: the owner and admins manage a bot; anyone else gets 404
(never 403: another owner's bot is never revealed), no credentials 401, a bot key 403/404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import make_admin, sign_up

pytestmark = pytest.mark.integration

# (method, path template, json body, status for the owner/admin)
ROUTES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/api/v1/bots/{bot}", None, 200),
    ("PATCH", "/api/v1/bots/{bot}", {"description": "x"}, 200),
    ("POST", "/api/v1/bots/{bot}/publish", None, 200),
    ("POST", "/api/v1/bots/{bot}/knowledge", {"question": "Q", "answer": "A"}, 201),
    ("GET", "/api/v1/bots/{bot}/knowledge", None, 200),
    (
        "POST",
        "/api/v1/bots/{bot}/knowledge/bulk",
        {"entries": [{"question": "Q", "answer": "A"}]},
        201,
    ),
    ("GET", "/api/v1/bots/{bot}/knowledge/{entry}", None, 200),
    ("PATCH", "/api/v1/bots/{bot}/knowledge/{entry}", {"answer": "B"}, 200),
    ("POST", "/api/v1/bots/{bot}/api-keys", {"name": "k"}, 201),
    ("GET", "/api/v1/bots/{bot}/api-keys", None, 200),
    ("DELETE", "/api/v1/bots/{bot}/api-keys/{key}", None, 204),
    ("DELETE", "/api/v1/bots/{bot}/knowledge/{entry}", None, 204),
    ("POST", "/api/v1/bots/{bot}/archive", None, 200),
    ("DELETE", "/api/v1/bots/{bot}", None, 204),
]


async def _world(client: httpx.AsyncClient, app: FastAPI) -> dict[str, Any]:
    owner = await sign_up(client, "owner@example.com")
    stranger = await sign_up(client, "stranger@example.com")
    admin = await sign_up(client, "admin@example.com")
    await make_admin(app, "admin@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "B"}, headers=owner.headers)).json()
    entry = (
        await client.post(
            f"/api/v1/bots/{bot['id']}/knowledge",
            json={"question": "Q", "answer": "A"},
            headers=owner.headers,
        )
    ).json()
    keys_url = f"/api/v1/bots/{bot['id']}/api-keys"
    key = (await client.post(keys_url, headers=owner.headers)).json()
    # a second key, so the route that revokes `key` leaves the key under test working
    chat_key = (await client.post(keys_url, headers=owner.headers)).json()
    other_bot = (
        await client.post("/api/v1/bots", json={"name": "Other"}, headers=stranger.headers)
    ).json()
    other_key = (
        await client.post(f"/api/v1/bots/{other_bot['id']}/api-keys", headers=stranger.headers)
    ).json()
    return {
        "owner": owner.headers,
        "stranger": stranger.headers,
        "admin": admin.headers,
        "own_key": {"Authorization": f"Bearer {chat_key['key']}"},
        "other_key": {"Authorization": f"Bearer {other_key['key']}"},
        "ids": {"bot": bot["id"], "entry": entry["id"], "key": key["id"]},
    }


async def _call(
    client: httpx.AsyncClient, route: tuple[str, str, Any, int], ids: dict[str, str], headers: Any
) -> httpx.Response:
    method, template, body, _ = route
    return await client.request(method, template.format(**ids), json=body, headers=headers)


async def test_access_matrix(client: httpx.AsyncClient, app: FastAPI) -> None:
    world = await _world(client, app)
    ids = world["ids"]
    for route in ROUTES:
        method, template, _, success = route
        label = f"{method} {template}"
        anonymous = await _call(client, route, ids, {})
        assert anonymous.status_code == 401, label
        assert anonymous.headers["www-authenticate"] == "Bearer", label
        assert (await _call(client, route, ids, world["stranger"])).status_code == 404, label
        for key in ("own_key", "other_key"):
            keyed = await _call(client, route, ids, world[key])
            assert keyed.status_code in (403, 404), f"{label} with {key}"
        # the admin acts on the owner's bot; every answer is a success
        assert (await _call(client, route, ids, world["admin"])).status_code == success, label


async def test_owner_succeeds_on_every_route(client: httpx.AsyncClient, app: FastAPI) -> None:
    world = await _world(client, app)
    for route in ROUTES:
        response = await _call(client, route, world["ids"], world["owner"])
        assert response.status_code == route[3], f"{route[0]} {route[1]}: {response.text}"


async def test_bot_keys_cannot_create_or_list_bots(client: httpx.AsyncClient, app: FastAPI) -> None:
    world = await _world(client, app)
    for method, path, body in [
        ("POST", "/api/v1/bots", {"name": "x"}),
        ("GET", "/api/v1/bots", None),
    ]:
        response = await client.request(method, path, json=body, headers=world["own_key"])
        assert response.status_code == 403


async def test_any_signed_in_user_reads_the_public_fields_of_a_published_bot(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client, "owner@example.com")
    reader = await sign_up(client, "reader@example.com")
    created = await client.post(
        "/api/v1/bots",
        json={"name": "Shop", "greeting": "Hi!", "system_prompt": "secret instructions"},
        headers=owner.headers,
    )
    bot = created.json()
    url = f"/api/v1/bots/{bot['id']}"
    assert (await client.get(url, headers=reader.headers)).status_code == 404  # a draft
    await client.post(f"{url}/publish", headers=owner.headers)

    public = await client.get(url, headers=reader.headers)
    assert public.status_code == 200
    assert public.json() == {
        "id": bot["id"],
        "name": "Shop",
        "description": "",
        "greeting": "Hi!",
        "engine": "knowledge",
        "status": "published",
    }
    assert "etag" not in public.headers
    full = await client.get(url, headers=owner.headers)
    assert full.json()["system_prompt"] == "secret instructions"
    assert (await client.get(url)).status_code == 401

    await client.post(f"{url}/archive", headers=owner.headers)
    assert (await client.get(url, headers=reader.headers)).status_code == 404
