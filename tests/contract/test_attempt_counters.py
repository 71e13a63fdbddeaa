"""The attempt counter port: the same cases in process memory and in the real Redis server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.throttling import InMemoryAttemptCounter, RedisAttemptCounter
from application.ports import AttemptCounter
from tests.databases import IN_CI

pytestmark = pytest.mark.contract
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(params=["memory", "redis"])
async def counter(request: pytest.FixtureRequest) -> AsyncIterator[AttemptCounter]:
    if request.param == "memory":
        yield InMemoryAttemptCounter()
        return
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except RedisConnectionError as error:
        await client.aclose()
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {error}")
        pytest.skip(f"Redis is down: {error}")
    yield RedisAttemptCounter(client, prefix=f"test:{uuid.uuid4().hex}:")
    await client.aclose()


async def test_counts_hits_within_the_window(counter: AttemptCounter) -> None:
    assert await counter.count("k") == (0, 0)
    assert (await counter.hit("k", 60))[0] == 1
    count, seconds_left = await counter.hit("k", 60)
    assert count == 2
    assert 0 < seconds_left <= 60
    failures, retry_after = await counter.count("k")
    assert failures == 2
    assert 0 < retry_after <= 60


async def test_concurrent_hits_each_see_their_own_count(counter: AttemptCounter) -> None:
    """Callers count first and check after: no two concurrent attempts may see the same count."""
    results = await asyncio.gather(*(counter.hit("race", 60) for _ in range(50)))
    assert sorted(count for count, _ in results) == list(range(1, 51))
    assert all(0 < seconds_left <= 60 for _, seconds_left in results)
    assert (await counter.count("race"))[0] == 50


async def test_a_refund_takes_back_one_attempt_and_never_goes_below_zero(
    counter: AttemptCounter,
) -> None:
    await counter.refund("never-hit")
    assert await counter.count("never-hit") == (0, 0)
    await counter.hit("k", 60)
    await counter.hit("k", 60)
    await counter.refund("k")
    failures, retry_after = await counter.count("k")
    assert failures == 1
    assert 0 < retry_after <= 60
    await counter.refund("k")
    await counter.refund("k")
    assert await counter.count("k") == (0, 0)
    assert (await counter.hit("k", 60))[0] == 1


async def test_concurrent_hits_and_refunds_balance(counter: AttemptCounter) -> None:
    await asyncio.gather(*(counter.hit("busy", 60) for _ in range(20)))
    await asyncio.gather(
        *(counter.refund("busy") for _ in range(15)), *(counter.hit("busy", 60) for _ in range(5))
    )
    assert (await counter.count("busy"))[0] == 10


async def test_keys_are_independent_and_reset(counter: AttemptCounter) -> None:
    await counter.hit("a", 60)
    await counter.hit("b", 60)
    await counter.reset("a")
    assert (await counter.count("a"))[0] == 0
    assert (await counter.count("b"))[0] == 1


async def test_the_window_ends(counter: AttemptCounter) -> None:
    await counter.hit("short", 1)
    await asyncio.sleep(1.1)
    assert (await counter.count("short"))[0] == 0


async def test_two_workers_share_counters_through_redis() -> None:
    """What Redis is for: failures seen by one worker throttle the next worker too."""
    prefix = f"test:{uuid.uuid4().hex}:"
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        await first.ping()
    except RedisConnectionError as error:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {error}")
        pytest.skip(f"Redis is down: {error}")
    try:
        worker_a = RedisAttemptCounter(first, prefix=prefix)
        worker_b = RedisAttemptCounter(second, prefix=prefix)
        await worker_a.hit("login:account:ada@example.com", 60)
        await worker_b.hit("login:account:ada@example.com", 60)
        assert (await worker_a.count("login:account:ada@example.com"))[0] == 2
    finally:
        await first.aclose()
        await second.aclose()
