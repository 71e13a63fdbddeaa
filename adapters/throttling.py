"""Attempt counters for throttling: in process memory, or in Redis when several workers share them.

Fixed windows that start at the first attempt: simple, O(1) in Redis (INCR + EXPIRE in one
transaction), and the time left in the window is exactly the `Retry-After` a throttled caller is
told. A hit counts and reports in one step, so concurrent callers each see their own count.
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

    async def hit(self, key: str, window_seconds: int) -> tuple[int, int]:
        # No await in here: on one event loop the read and the write cannot interleave.
        window = self._current(key)
        if window is None:
            if len(self._windows) > 100_000:  # bound memory under an address-spraying attack
                self._purge_expired()
            window = (0, self._monotonic() + window_seconds)
        self._windows[key] = (window[0] + 1, window[1])
        return window[0] + 1, self._seconds_left(window[1])

    async def refund(self, key: str) -> None:
        window = self._current(key)
        if window is None:
            return
        if window[0] <= 1:
            del self._windows[key]
        else:
            self._windows[key] = (window[0] - 1, window[1])

    async def count(self, key: str) -> tuple[int, int]:
        window = self._current(key)
        if window is None:
            return 0, 0
        return window[0], self._seconds_left(window[1])

    def _seconds_left(self, ends: float) -> int:
        return max(1, math.ceil(ends - self._monotonic()))

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _purge_expired(self) -> None:
        now = self._monotonic()
        for key in [k for k, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[key]


def redis_client(url: str) -> Redis:
    from redis.asyncio import Redis

    return Redis.from_url(url)


# DECR on a key that just expired would create it at -1 with no TTL (a window that never ends):
# the check and the decrement must be one step, which only a script gives.
_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""


class RedisAttemptCounter:
    def __init__(self, redis: Redis, *, prefix: str = "chatbots:attempts:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._refund = redis.register_script(_REFUND)

    async def hit(self, key: str, window_seconds: int) -> tuple[int, int]:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_seconds, nx=True)  # the window starts at the first attempt
            pipe.ttl(name)
            count, _, ttl = await pipe.execute()
        return int(count), max(1, int(ttl))

    async def refund(self, key: str) -> None:
        await self._refund(keys=[self._prefix + key])

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
