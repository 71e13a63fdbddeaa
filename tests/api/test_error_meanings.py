"""Errors mean what they say: 412 only for a stale If-Match, 503 for a busy store, 409 for a
broken integrity rule, and a duplicate that is not an idempotency race is not reported as one."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from application import errors
from application.bots import BotLifecycle
from entrypoints.api.errors import problem_for
from tests.api.conftest import sign_up

pytestmark = pytest.mark.integration


def test_the_error_table_gives_each_store_error_its_meaning() -> None:
    busy = problem_for(errors.StoreBusy("the database is busy", retry_after_seconds=2))
    assert (busy.status, busy.slug, busy.headers["Retry-After"]) == (503, "store-busy", "2")
    assert problem_for(errors.IntegrityViolation("no such parent")).status == 409
    assert problem_for(errors.IntegrityViolation("x")).slug == "integrity-violation"
    assert problem_for(errors.ConcurrentUpdate("lost a race")).status == 409
    assert problem_for(errors.PreconditionFailed("stale")).status == 412


async def test_concurrent_patches_without_if_match_conflict_instead_of_412(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client, "owner@example.com")
    bot = (await client.post("/api/v1/bots", json={"name": "B"}, headers=owner.headers)).json()
    url = f"/api/v1/bots/{bot['id']}"
    responses = await asyncio.gather(
        *(client.patch(url, json={"name": f"N{i}"}, headers=owner.headers) for i in range(8))
    )
    codes = {r.status_code for r in responses}
    assert 200 in codes
    assert codes <= {200, 409}  # never 412: nobody sent If-Match


async def test_a_busy_store_answers_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await sign_up(client, "owner@example.com")

    async def busy(*args: object, **kwargs: object) -> None:
        raise errors.StoreBusy("The database is busy; try again.")

    monkeypatch.setattr(BotLifecycle, "create_bot", busy)
    response = await client.post("/api/v1/bots", json={"name": "B"}, headers=owner.headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"] == "/problems/store-busy"
