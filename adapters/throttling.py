"""Failure counters for throttling: in process memory, or in Redis when several workers share them.

Fixed windows that start at the first failure: simple, O(1) in Redis (INCR + EXPIRE), and the
time left in the window is exactly the `Retry-After` a throttled caller is told.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported only where Redis is configured: it costs ~14 MB per worker
    from redis.asyncio import Redis


class InMemoryAttemptCounter:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._windows: dict[str, tuple[int, float]] = {}
        self._monotonic = monotonic

    def _current(self, key: str) -> tuple[int, float] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= self._monotonic():
            del self._windows[key]
            return None
        return window

    async def hit(self, key: str, window_seconds: int) -> int:
        window = self._current(key)
        if window is None:
            if len(self._windows) > 100_000:  # bound memory under an address-spraying attack
                self._purge_expired()
            window = (0, self._monotonic() + window_seconds)
        self._windows[key] = (window[0] + 1, window[1])
        return window[0] + 1

    async def count(self, key: str) -> tuple[int, int]:
        window = self._current(key)
        if window is None:
            return 0, 0
        return window[0], max(1, math.ceil(window[1] - self._monotonic()))

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _purge_expired(self) -> None:
        now = self._monotonic()
        for key in [k for k, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[key]


def redis_client(url: str) -> Redis:
    from redis.asyncio import Redis

    return Redis.from_url(url)


class RedisAttemptCounter:
    def __init__(self, redis: Redis, *, prefix: str = "chatbots:attempts:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, window_seconds: int) -> int:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_seconds, nx=True)  # the window starts at the first failure
            count, _ = await pipe.execute()
        return int(count)

    async def count(self, key: str) -> tuple[int, int]:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.ttl(name)
            value, ttl = await pipe.execute()
        if value is None:
            return 0, 0
        return int(value), max(1, int(ttl))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
