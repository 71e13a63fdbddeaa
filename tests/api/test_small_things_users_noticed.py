"""Details a newcomer noticed: replay headers, the ids of a bulk import, `Z` in exports."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import ApiUser, sign_up

pytestmark = pytest.mark.integration
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def _conversation(client: httpx.AsyncClient) -> tuple[ApiUser, dict[str, str], str]:
    owner = await sign_up(client, "owner@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "Shop"}, headers=owner.headers)).json()
    conversation = (
        await client.post(f"/api/v1/bots/{bot['id']}/conversations", headers=owner.headers)
    ).json()
    return owner, bot, conversation["id"]


async def test_a_replayed_answer_says_so(client: httpx.AsyncClient) -> None:
    owner, bot, conversation_id = await _conversation(client)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    headers = {**owner.headers, "Idempotency-Key": "k-1"}
    first = await client.post(url, json={"content": "hello"}, headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post(url, json={"content": "hello"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    streamed = await client.post(
        url, json={"content": "hello"}, headers={**headers, "Accept": "text/event-stream"}
    )
    assert streamed.headers["idempotent-replayed"] == "true"

    await client.post(f"/api/v1/bots/{bot['id']}/publish", headers=owner.headers)
    chat = {"model": bot["id"], "messages": [{"role": "user", "content": "hi"}]}
    v1 = {**owner.headers, "Idempotency-Key": "k-2"}
    assert (
        "idempotent-replayed"
        not in (await client.post("/v1/chat/completions", json=chat, headers=v1)).headers
    )


async def test_a_bulk_import_returns_the_new_ids_in_order(client: httpx.AsyncClient) -> None:
    owner, bot, _ = await _conversation(client)
    entries = [{"question": f"Q{i}", "answer": f"A{i}"} for i in range(3)]
    created = await client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/bulk", json={"entries": entries}, headers=owner.headers
    )
    assert created.status_code == 201
    body = created.json()
    assert body["created"] == 3
    for entry_id, sent in zip(body["ids"], entries, strict=True):
        stored = await client.get(
            f"/api/v1/bots/{bot['id']}/knowledge/{entry_id}", headers=owner.headers
        )
        assert stored.json()["question"] == sent["question"]


async def test_exports_write_times_like_every_other_answer(client: httpx.AsyncClient) -> None:
    owner, _, conversation_id = await _conversation(client)
    await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": "hello"},
        headers=owner.headers,
    )
    url = f"/api/v1/conversations/{conversation_id}/export"
    document = (await client.get(url, headers=owner.headers)).json()
    times = [document["conversation"]["created_at"], document["conversation"]["last_message_at"]]
    times += [m["created_at"] for m in document["messages"]]
    assert all(RFC3339_Z.match(t) for t in times), times
    read = await client.get(f"/api/v1/conversations/{conversation_id}", headers=owner.headers)
    assert read.json()["created_at"] == document["conversation"]["created_at"]
    markdown = (await client.get(f"{url}?format=markdown", headers=owner.headers)).text
    assert "+00:00" not in markdown
    assert re.search(r"- started: \S+Z$", markdown, re.MULTILINE)
