"""Concurrency: many posts to one conversation at once lose nothing and duplicate nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.api.conftest import sign_up
from tests.api.test_conversations_api import knowledge_bot, post, start

pytestmark = pytest.mark.integration


async def test_fifty_concurrent_posts_to_one_conversation(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "owner@example.com")
    bot = await knowledge_bot(owner)
    conversation = await start(owner, bot["id"])
    responses = await asyncio.gather(
        *(post(owner, conversation["id"], f"message number {i}") for i in range(50))
    )
    assert [r.status_code for r in responses] == [201] * 50
    cursor = None
    all_messages: list[dict[str, object]] = []
    while True:
        query = f"?limit=100&cursor={cursor}" if cursor else "?limit=100"
        page = (
            await owner.client.get(
                f"/api/v1/conversations/{conversation['id']}/messages{query}",
                headers=owner.headers,
            )
        ).json()
        all_messages += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [m["seq"] for m in all_messages] == list(range(1, 102))  # greeting + 50 pairs
    users = sorted(m["content"] for m in all_messages if m["role"] == "user")
    assert users == sorted(f"message number {i}" for i in range(50))
    read = await owner.client.get(
        f"/api/v1/conversations/{conversation['id']}", headers=owner.headers
    )
    assert read.json()["message_count"] == 101
