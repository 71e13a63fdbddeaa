"""Conversations and messages over the API: every route, SSE, idempotency, failures."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import ApiUser, make_admin, sign_up
from tests.api.test_bots_api import create_bot
from tests.api.test_identity_api import assert_problem

pytestmark = pytest.mark.integration

KNOWLEDGE = [
    {
        "question": "What are your opening hours?",
        "answer": "We are open from 9 to 5, Monday to Friday.",
        "examples": ["when are you open", "what time do you open", "opening times"],
    },
    {
        "question": "How do I reset my password?",
        "answer": "Use the 'Forgot password' link on the sign-in page.",
        "examples": ["I forgot my password", "reset password", "can't log in"],
    },
]


async def knowledge_bot(user: ApiUser, *, publish: bool = True, **fields: Any) -> dict[str, Any]:
    bot = await create_bot(user, greeting="Hello! Ask me about our shop.", **fields)
    response = await user.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge/bulk",
        json={"entries": KNOWLEDGE},
        headers=user.headers,
    )
    assert response.status_code == 201
    if publish:
        await user.client.post(f"/api/v1/bots/{bot['id']}/publish", headers=user.headers)
    return bot


async def start(user: ApiUser, bot_id: str, **body: Any) -> dict[str, Any]:
    response = await user.client.post(
        f"/api/v1/bots/{bot_id}/conversations", json=body, headers=user.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def post(user: ApiUser, conversation_id: str, content: str, **headers: str) -> httpx.Response:
    return await user.client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"content": content},
        headers={**user.headers, **headers},
    )


async def history(user: ApiUser, conversation_id: str) -> list[dict[str, Any]]:
    response = await user.client.get(
        f"/api/v1/conversations/{conversation_id}/messages?limit=100", headers=user.headers
    )
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "owner@example.com")


async def test_a_conversation_starts_with_the_greeting(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"], title="Shop questions")
    assert (conversation["message_count"], conversation["title"]) == (1, "Shop questions")
    [greeting] = await history(owner, conversation["id"])
    assert (greeting["role"], greeting["seq"]) == ("assistant", 1)
    assert greeting["content"] == "Hello! Ask me about our shop."


async def test_blocking_post_answers_from_knowledge(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    response = await post(owner, conversation["id"], "I forgot my password")
    assert response.status_code == 201
    body = response.json()
    assert (body["user_message"]["seq"], body["reply"]["seq"]) == (2, 3)
    reply = body["reply"]
    assert reply["content"] == KNOWLEDGE[1]["answer"]
    metadata = reply["metadata"]
    assert metadata["engine"] == "knowledge"
    assert metadata["fallback"] is False
    assert 0 <= metadata["confidence"] <= 1
    assert len(metadata["sources"]) == 1
    assert isinstance(metadata["latency_ms"], int)

    unknown = (await post(owner, conversation["id"], "What is the airspeed of a swallow?")).json()
    assert unknown["reply"]["metadata"]["fallback"] is True
    assert unknown["reply"]["content"] == bot["fallback_message"]
    assert unknown["reply"]["metadata"]["sources"] == []


async def test_sse_event_sequence(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    response = await post(
        owner, conversation["id"], "when are you open", Accept="text/event-stream"
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert set(names[:-1]) == {"delta"}
    assert len(names) >= 2
    streamed = "".join(data["content"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert streamed == done["content"] == KNOWLEDGE[0]["answer"]
    assert done["role"] == "assistant"
    stored = await history(owner, conversation["id"])
    assert [m["role"] for m in stored] == ["assistant", "user", "assistant"]


async def test_sse_refusals_are_plain_problems(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    await owner.client.post(
        f"/api/v1/conversations/{conversation['id']}/close", headers=owner.headers
    )
    response = await post(owner, conversation["id"], "hello", Accept="text/event-stream")
    assert_problem(response, 409)


async def test_idempotent_retry_replays_the_first_answer(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    first = await post(owner, conversation["id"], "reset password", **{"Idempotency-Key": "k-1"})
    again = await post(owner, conversation["id"], "reset password", **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(await history(owner, conversation["id"])) == 3
    different = await post(owner, conversation["id"], "other text", **{"Idempotency-Key": "k-1"})
    assert_problem(different, 409)
    streamed = await post(
        owner,
        conversation["id"],
        "reset password",
        **{"Idempotency-Key": "k-1", "Accept": "text/event-stream"},
    )
    assert parse_sse(streamed.text)[-1][1]["id"] == first.json()["reply"]["id"]


async def test_concurrent_retries_with_one_key_store_one_pair(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    responses = await asyncio.gather(
        *(
            post(owner, conversation["id"], "opening times", **{"Idempotency-Key": "same"})
            for _ in range(5)
        )
    )
    codes = [r.status_code for r in responses]
    assert codes.count(201) >= 1
    assert set(codes) <= {201, 409}  # 409: "in progress" while the first is answered
    stored = await history(owner, conversation["id"])
    assert len(stored) == 3  # greeting + exactly one user message + one reply
    assert len({r.json()["reply"]["id"] for r in responses if r.status_code == 201}) == 1


async def test_keys_are_per_caller(owner: ApiUser, client: httpx.AsyncClient) -> None:
    bot = await knowledge_bot(owner)
    other = await sign_up(client, "other@example.com")
    mine, theirs = await start(owner, bot["id"]), await start(other, bot["id"])
    assert (
        await post(owner, mine["id"], "hi there", **{"Idempotency-Key": "x"})
    ).status_code == 201
    assert (
        await post(other, theirs["id"], "hi there", **{"Idempotency-Key": "x"})
    ).status_code == 201


async def test_closed_conversation_and_archived_bot_answer_409(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    closed = await owner.client.post(
        f"/api/v1/conversations/{conversation['id']}/close", headers=owner.headers
    )
    assert closed.json()["status"] == "closed"
    assert_problem(await post(owner, conversation["id"], "hello?"), 409)

    other = await start(owner, bot["id"])
    await owner.client.post(f"/api/v1/bots/{bot['id']}/archive", headers=owner.headers)
    assert_problem(await post(owner, other["id"], "hello?"), 409)
    response = await owner.client.post(
        f"/api/v1/bots/{bot['id']}/conversations", json={}, headers=owner.headers
    )
    assert_problem(response, 409)
    assert len(await history(owner, other["id"])) == 1  # still readable


@pytest.mark.parametrize("content", ["", "x" * 8001])
async def test_message_size_is_validated(owner: ApiUser, content: str) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    assert_problem(await post(owner, conversation["id"], content), 422)
    assert len(await history(owner, conversation["id"])) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here once the socket is closed


async def test_engine_failure_keeps_the_message_and_the_next_post_works(
    owner: ApiUser,
) -> None:
    bot = await create_bot(
        owner,
        engine="openai",
        engine_config={"base_url": f"http://127.0.0.1:{_closed_port()}/v1", "model": "m"},
    )
    conversation = await start(owner, bot["id"])
    failed = await post(owner, conversation["id"], "Are you there?")
    assert_problem(failed, 502)
    stored = await history(owner, conversation["id"])
    assert [m["content"] for m in stored] == ["Are you there?"]

    streamed = await post(owner, conversation["id"], "Still there?", Accept="text/event-stream")
    assert streamed.status_code == 201
    [(name, problem)] = parse_sse(streamed.text)
    assert name == "error"
    assert problem["status"] == 502

    # switch the bot to the embedded engine: the same conversation carries on
    await owner.client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"engine": "knowledge", "engine_config": {}},
        headers=owner.headers,
    )
    ok = await post(owner, conversation["id"], "hello")
    assert ok.status_code == 201
    assert [m["seq"] for m in await history(owner, conversation["id"])] == [1, 2, 3, 4]


async def test_history_pages_oldest_first(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    for i in range(3):
        await post(owner, conversation["id"], f"message {i}")
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    first = (await owner.client.get(f"{url}?limit=4", headers=owner.headers)).json()
    rest = (
        await owner.client.get(
            f"{url}?limit=4&cursor={first['next_cursor']}", headers=owner.headers
        )
    ).json()
    seqs = [m["seq"] for m in first["items"] + rest["items"]]
    assert seqs == list(range(1, 8))
    assert rest["next_cursor"] is None


async def test_read_rename_list_delete(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    first, second = await start(owner, bot["id"]), await start(owner, bot["id"])
    await post(owner, first["id"], "hello")  # `first` now has the newest activity
    url = f"/api/v1/conversations/{first['id']}"
    read = (await owner.client.get(url, headers=owner.headers)).json()
    assert (read["message_count"], read["last_message_at"] > first["last_message_at"]) == (3, True)
    renamed = await owner.client.patch(url, json={"title": "Renamed"}, headers=owner.headers)
    assert renamed.json()["title"] == "Renamed"
    listing = (await owner.client.get("/api/v1/conversations", headers=owner.headers)).json()
    assert [c["id"] for c in listing["items"]] == [first["id"], second["id"]]
    filtered = await owner.client.get("/api/v1/conversations?status=closed", headers=owner.headers)
    assert filtered.json()["items"] == []
    assert (await owner.client.delete(url, headers=owner.headers)).status_code == 204
    assert_problem(await owner.client.get(url, headers=owner.headers), 404)


async def test_strangers_and_the_bot_owner(owner: ApiUser, client: httpx.AsyncClient) -> None:
    bot = await knowledge_bot(owner)
    visitor = await sign_up(client, "visitor@example.com")
    stranger = await sign_up(client, "stranger@example.com")
    conversation = await start(visitor, bot["id"])  # published: anyone signed in may chat
    await post(visitor, conversation["id"], "opening times")
    url = f"/api/v1/conversations/{conversation['id']}"
    assert_problem(await stranger.client.get(url, headers=stranger.headers), 404)
    assert_problem(await post(stranger, conversation["id"], "hi"), 404)
    # the bot's owner reads, but does not write
    assert (await owner.client.get(url, headers=owner.headers)).status_code == 200
    assert len(await history(owner, conversation["id"])) == 3
    assert_problem(await post(owner, conversation["id"], "hi"), 403)
    listing = await owner.client.get(
        f"/api/v1/bots/{bot['id']}/conversations", headers=owner.headers
    )
    assert [c["id"] for c in listing.json()["items"]] == [conversation["id"]]
    assert_problem(
        await stranger.client.get(
            f"/api/v1/bots/{bot['id']}/conversations", headers=stranger.headers
        ),
        404,
    )
    draft = await knowledge_bot(owner, publish=False)
    response = await visitor.client.post(
        f"/api/v1/bots/{draft['id']}/conversations", json={}, headers=visitor.headers
    )
    assert_problem(response, 404)


async def test_bot_keys_chat_for_external_users(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner, publish=False)
    key = (
        await owner.client.post(f"/api/v1/bots/{bot['id']}/api-keys", headers=owner.headers)
    ).json()
    service = ApiUser(owner.client, "service", {"access_token": key["key"]})
    conversation = await start(service, bot["id"], external_user_id="customer-42")
    assert conversation["external_user_id"] == "customer-42"
    assert conversation["user_id"] is None
    assert (await post(service, conversation["id"], "reset password")).status_code == 201
    assert len(await history(service, conversation["id"])) == 3
    mine = (await owner.client.get("/api/v1/conversations", headers=service.headers)).json()
    assert [c["id"] for c in mine["items"]] == [conversation["id"]]
    other_bot = await knowledge_bot(owner)
    refused = await service.client.post(
        f"/api/v1/bots/{other_bot['id']}/conversations", json={}, headers=service.headers
    )
    assert_problem(refused, 404)
    owners_chat = await start(owner, bot["id"])
    assert_problem(await post(service, owners_chat["id"], "hi"), 404)
    filtered = await owner.client.get(
        f"/api/v1/bots/{bot['id']}/conversations?external_user_id=customer-42",
        headers=owner.headers,
    )
    assert [c["id"] for c in filtered.json()["items"]] == [conversation["id"]]


async def test_feedback_and_stats(owner: ApiUser, client: httpx.AsyncClient, app: FastAPI) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    good = (await post(owner, conversation["id"], "opening times")).json()
    bad = (await post(owner, conversation["id"], "tell me a joke about cheese")).json()
    url = "/api/v1/messages/{}/feedback"
    up = await owner.client.put(
        url.format(good["reply"]["id"]), json={"rating": "up"}, headers=owner.headers
    )
    assert up.status_code == 200
    assert up.json()["rating"] == "up"
    down = await owner.client.put(
        url.format(bad["reply"]["id"]),
        json={"rating": "down", "comment": "no answer"},
        headers=owner.headers,
    )
    assert down.json()["comment"] == "no answer"
    assert_problem(
        await owner.client.put(
            url.format(good["user_message"]["id"]), json={"rating": "up"}, headers=owner.headers
        ),
        409,
    )
    assert_problem(
        await owner.client.put(
            url.format(good["reply"]["id"]), json={"rating": "meh"}, headers=owner.headers
        ),
        422,
    )
    flagged = await owner.client.get(
        f"/api/v1/bots/{bot['id']}/conversations?feedback=down", headers=owner.headers
    )
    assert [c["id"] for c in flagged.json()["items"]] == [conversation["id"]]

    stats = (
        await owner.client.get(f"/api/v1/bots/{bot['id']}/stats", headers=owner.headers)
    ).json()
    assert stats["conversations"] == 1
    assert stats["messages"] == 5
    assert stats["replies"] == 2
    assert stats["fallback_rate"] == 0.5
    assert (stats["feedback_up"], stats["feedback_down"]) == (1, 1)
    assert stats["latency_p50_ms"] is not None
    assert stats["latency_p95_ms"] >= stats["latency_p50_ms"]
    stranger = await sign_up(client, "stranger@example.com")
    assert_problem(
        await stranger.client.get(f"/api/v1/bots/{bot['id']}/stats", headers=stranger.headers),
        404,
    )
    admin = await sign_up(client, "root@example.com")
    await make_admin(app, "root@example.com")
    assert (
        await admin.client.get(f"/api/v1/bots/{bot['id']}/stats", headers=admin.headers)
    ).status_code == 200


async def test_export(owner: ApiUser) -> None:
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"], title="Export me")
    await post(owner, conversation["id"], "opening times")
    url = f"/api/v1/conversations/{conversation['id']}/export"
    exported = (await owner.client.get(url, headers=owner.headers)).json()
    assert exported["conversation"]["title"] == "Export me"
    assert [m["seq"] for m in exported["messages"]] == [1, 2, 3]
    markdown = await owner.client.get(f"{url}?format=markdown", headers=owner.headers)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# Export me" in markdown.text
    assert KNOWLEDGE[0]["answer"] in markdown.text
    assert_problem(await owner.client.get(f"{url}?format=pdf", headers=owner.headers), 422)
