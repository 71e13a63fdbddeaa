"""`/api/v1/bots`: lifecycle, ETags, pagination, validation, knowledge, API keys."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import ApiUser, client_for, make_admin, make_app, sign_up
from tests.api.test_identity_api import assert_problem

pytestmark = pytest.mark.integration


async def create_bot(user: ApiUser, **fields: Any) -> dict[str, Any]:
    response = await user.client.post(
        "/api/v1/bots", json={"name": "Helper", **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "owner@example.com")


async def test_create_read_and_etag(owner: ApiUser) -> None:
    bot = await create_bot(owner, greeting="Hi!", engine_config={"threshold": 0.5})
    assert (bot["status"], bot["version"], bot["engine"]) == ("draft", 1, "knowledge")
    assert bot["engine_config"] == {"threshold": 0.5}
    response = await owner.client.get(f"/api/v1/bots/{bot['id']}", headers=owner.headers)
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == bot


@pytest.mark.parametrize(
    "payload",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "colour": "blue"},
        {"name": "ok", "engine": "gpt"},
        {"name": "ok", "engine_config": {"threshold": 7}},
        {"name": "ok", "engine_config": {"unknown": 1}},
        {"name": "ok", "engine": "openai", "engine_config": {}},
        {"name": "ok", "engine": "openai", "engine_config": {"base_url": "ftp://x", "model": "m"}},
    ],
)
async def test_create_validation(owner: ApiUser, payload: dict[str, Any]) -> None:
    response = await owner.client.post("/api/v1/bots", json=payload, headers=owner.headers)
    assert_problem(response, 422)


async def test_openai_bots_keep_the_key_name_not_the_key(
    database_url: str, sql_engine: object
) -> None:
    app = make_app(database_url, upstream_keys=("UPSTREAM_KEY",))  # the operator offers it
    async for client in client_for(app):
        owner = await sign_up(client, "owner@example.com")
        bot = await create_bot(
            owner,
            engine="openai",
            engine_config={
                "base_url": "http://127.0.0.1:11434/v1/",
                "model": "llama3",
                "api_key_env": "UPSTREAM_KEY",
            },
        )
        assert bot["engine_config"]["api_key_env"] == "UPSTREAM_KEY"
        assert bot["engine_config"]["base_url"] == "http://127.0.0.1:11434/v1"


async def test_patch_with_if_match(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    url = f"/api/v1/bots/{bot['id']}"
    changed = await owner.client.patch(
        url, json={"name": "Renamed"}, headers={**owner.headers, "If-Match": '"1"'}
    )
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.headers["etag"] == '"2"'
    stale = await owner.client.patch(
        url, json={"name": "Again"}, headers={**owner.headers, "If-Match": '"1"'}
    )
    assert_problem(stale, 412)
    unconditional = await owner.client.patch(url, json={"greeting": "Yo"}, headers=owner.headers)
    assert unconditional.json()["version"] == 3
    assert_problem(await owner.client.patch(url, json={"name": None}, headers=owner.headers), 422)
    assert_problem(
        await owner.client.patch(url, json={"owner_id": "x"}, headers=owner.headers), 422
    )
    switched = await owner.client.patch(
        url, json={"engine": "openai"}, headers=owner.headers
    )  # the knowledge config does not fit the openai engine
    assert_problem(switched, 422)


async def test_concurrent_patches_with_one_if_match_only_one_wins(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    url = f"/api/v1/bots/{bot['id']}"
    responses = await asyncio.gather(
        *(
            owner.client.patch(
                url, json={"name": f"Name {i}"}, headers={**owner.headers, "If-Match": '"1"'}
            )
            for i in range(8)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [412] * 7
    final = (await owner.client.get(url, headers=owner.headers)).json()
    assert final["version"] == 2


async def test_lifecycle(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    url = f"/api/v1/bots/{bot['id']}"
    published = await owner.client.post(f"{url}/publish", headers=owner.headers)
    assert published.json()["status"] == "published"
    archived = await owner.client.post(f"{url}/archive", headers=owner.headers)
    assert archived.json()["status"] == "archived"
    assert_problem(await owner.client.post(f"{url}/publish", headers=owner.headers), 409)


async def test_list_filters_and_pages(owner: ApiUser, client: httpx.AsyncClient) -> None:
    names = ["Support alpha", "Sales", "Support beta"]
    bots = [await create_bot(owner, name=name) for name in names]
    await owner.client.post(f"/api/v1/bots/{bots[1]['id']}/publish", headers=owner.headers)
    other = await sign_up(client, "other@example.com")
    await create_bot(other, name="Support other")

    async def names_of(query: str) -> list[str]:
        response = await owner.client.get(f"/api/v1/bots{query}", headers=owner.headers)
        assert response.status_code == 200
        return [b["name"] for b in response.json()["items"]]

    assert await names_of("") == ["Support beta", "Sales", "Support alpha"]
    assert await names_of("?q=support") == ["Support beta", "Support alpha"]
    assert await names_of("?status=published") == ["Sales"]
    first = (await owner.client.get("/api/v1/bots?limit=2", headers=owner.headers)).json()
    assert len(first["items"]) == 2
    rest = await names_of(f"?limit=2&cursor={first['next_cursor']}")
    assert rest == ["Support alpha"]
    assert_problem(
        await owner.client.get("/api/v1/bots?status=deleted", headers=owner.headers), 422
    )


async def test_admins_see_every_bot(
    owner: ApiUser, client: httpx.AsyncClient, app: FastAPI
) -> None:
    await create_bot(owner)
    admin = await sign_up(client, "root@example.com")
    await make_admin(app, "root@example.com")
    listing = (await client.get("/api/v1/bots", headers=admin.headers)).json()
    assert len(listing["items"]) == 1


async def test_knowledge_crud_bumps_the_revision(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    base = f"/api/v1/bots/{bot['id']}"
    created = await owner.client.post(
        f"{base}/knowledge",
        json={"question": "Opening hours?", "answer": "9 to 5.", "examples": ["When open?"]},
        headers=owner.headers,
    )
    assert created.status_code == 201
    entry = created.json()
    assert entry["version"] == 1
    url = f"{base}/knowledge/{entry['id']}"
    assert (await owner.client.get(url, headers=owner.headers)).json() == entry
    revised = await owner.client.patch(
        url, json={"answer": "8 to 6."}, headers={**owner.headers, "If-Match": '"1"'}
    )
    assert revised.json()["answer"] == "8 to 6."
    assert revised.headers["etag"] == '"2"'
    stale = await owner.client.patch(
        url, json={"answer": "x"}, headers={**owner.headers, "If-Match": '"1"'}
    )
    assert_problem(stale, 412)
    listing = (await owner.client.get(f"{base}/knowledge", headers=owner.headers)).json()
    assert [e["id"] for e in listing["items"]] == [entry["id"]]
    assert (await owner.client.delete(url, headers=owner.headers)).status_code == 204
    assert_problem(await owner.client.get(url, headers=owner.headers), 404)
    after = (await owner.client.get(base, headers=owner.headers)).json()
    assert after["knowledge_revision"] == 3  # add, revise, delete
    assert after["version"] == 1  # knowledge edits never make a settings If-Match stale


@pytest.mark.parametrize(
    "payload",
    [
        {"question": "", "answer": "a"},
        {"question": "q"},
        {"question": "q", "answer": "a", "examples": ["x"] * 201},
        {"question": "q", "answer": "a" * 8001},
        {"question": "q", "answer": "a", "tags": "not-a-list"},
    ],
)
async def test_knowledge_validation(owner: ApiUser, payload: dict[str, Any]) -> None:
    bot = await create_bot(owner)
    response = await owner.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge", json=payload, headers=owner.headers
    )
    assert_problem(response, 422)


async def test_bulk_import_of_5000_entries(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    entries = [
        {"question": f"Question {i}?", "answer": f"Answer {i}.", "examples": [f"q{i}", f"e{i}"]}
        for i in range(5000)
    ]
    started = time.perf_counter()
    response = await owner.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/bulk", json={"entries": entries}, headers=owner.headers
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 5000
    assert len(set(response.json()["ids"])) == 5000
    print(f"\nbulk import of 5,000 entries: {elapsed:.2f} s")  # reported, not asserted
    page = await owner.client.get(
        f"/api/v1/bots/{bot['id']}/knowledge?limit=100", headers=owner.headers
    )
    assert page.json()["items"][0]["question"] == "Question 0?"


async def test_bulk_import_is_all_or_nothing(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    entries = [{"question": f"Q{i}", "answer": "A"} for i in range(10)]
    entries[7]["answer"] = "   "  # blank after trimming: refused by the domain
    response = await owner.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/bulk", json={"entries": entries}, headers=owner.headers
    )
    body = assert_problem(response, 422)
    assert "entries.7.answer" in str(body)
    listing = await owner.client.get(f"/api/v1/bots/{bot['id']}/knowledge", headers=owner.headers)
    assert listing.json()["items"] == []
    too_many = [{"question": "Q", "answer": "A"}] * 5001
    response = await owner.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/bulk",
        json={"entries": too_many},
        headers=owner.headers,
    )
    assert_problem(response, 422)


async def test_api_keys(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    base = f"/api/v1/bots/{bot['id']}/api-keys"
    created = await owner.client.post(base, json={"name": "website"}, headers=owner.headers)
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith(key["prefix"] + "_")
    assert key["prefix"].startswith("cbk_")
    listed = (await owner.client.get(base, headers=owner.headers)).json()
    assert listed[0]["prefix"] == key["prefix"]
    assert "key" not in listed[0]
    assert key["key"] not in str(listed)

    as_key = {"Authorization": f"Bearer {key['key']}"}
    # a valid key is known (not 401) but only for chat routes
    assert_problem(await owner.client.get("/api/v1/users/me", headers=as_key), 403)
    listed = (await owner.client.get(base, headers=owner.headers)).json()
    assert listed[0]["last_used_at"] is not None

    assert (
        await owner.client.delete(f"{base}/{key['id']}", headers=owner.headers)
    ).status_code == 204
    assert_problem(await owner.client.get("/api/v1/users/me", headers=as_key), 401)
    forged = {"Authorization": f"Bearer {key['prefix']}_not-the-secret"}
    assert_problem(await owner.client.get("/api/v1/users/me", headers=forged), 401)
    listed = (await owner.client.get(base, headers=owner.headers)).json()
    assert listed[0]["revoked_at"] is not None


async def test_deleting_a_bot_removes_its_knowledge_and_keys(owner: ApiUser) -> None:
    bot = await create_bot(owner)
    base = f"/api/v1/bots/{bot['id']}"
    await owner.client.post(
        f"{base}/knowledge", json={"question": "Q", "answer": "A"}, headers=owner.headers
    )
    key = (await owner.client.post(f"{base}/api-keys", headers=owner.headers)).json()
    stale = await owner.client.delete(base, headers={**owner.headers, "If-Match": '"9"'})
    assert_problem(stale, 412)
    assert (await owner.client.delete(base, headers=owner.headers)).status_code == 204
    assert_problem(await owner.client.get(base, headers=owner.headers), 404)
    as_key = {"Authorization": f"Bearer {key['key']}"}
    assert_problem(await owner.client.get("/api/v1/users/me", headers=as_key), 401)
