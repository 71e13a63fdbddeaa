"""`GET /v1/models` names no user: the bot owner's id there would point members at the admin."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import make_admin, sign_in, sign_up

pytestmark = pytest.mark.security


async def test_a_member_listing_the_admins_published_bot_learns_no_user_id(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await sign_up(client, "admin@example.com")
    await make_admin(app, "admin@example.com")
    admin = await sign_in(client, "admin@example.com")
    member = await sign_up(client, "member@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "Help"}, headers=admin.headers)).json()
    published = await client.post(f"/api/v1/bots/{bot['id']}/publish", headers=admin.headers)
    assert published.status_code == 200, published.text
    user_ids = [
        (await client.get("/api/v1/users/me", headers=user.headers)).json()["id"]
        for user in (admin, member)
    ]

    listed = await client.get("/v1/models", headers=member.headers)

    assert listed.status_code == 200, listed.text
    [model] = listed.json()["data"]
    assert model["id"] == bot["id"]
    assert model["owned_by"] == "chatbots"
    for user_id in user_ids:
        assert user_id not in listed.text
