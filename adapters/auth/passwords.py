"""Argon2id password hashing through pwdlib, kept off the event loop.

A hash costs ~0.14 s of CPU here. It runs in a small pool of its own whose threads run at a lower
scheduling priority, so a burst of logins slows other logins down, never the rest of the API.
The pool's queue is unbounded for callers that wait (sign-ins), but callers that may be refused
(registrations) are turned away once `max_pending` hashes are running or queued: a registration
flood then costs each sign-in at most that many hashes of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from application.ports import HashingBusy

# Lower than the event loop's (nice 0): under contention the scheduler favours request handling.
HASHING_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    # Not Linux, or not allowed: correctness is unaffected, only latency under login bursts.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_THREAD_NICENESS)


# One lane per hash (RFC 9106 allows it; OWASP's baseline uses it): the C library then runs each
# hash on one thread instead of four, so a login burst cannot outnumber the event loop's thread.
DEFAULT_ARGON2_PARAMETERS: dict[str, Any] = {"time_cost": 3, "memory_cost": 65536, "parallelism": 1}


class Argon2PasswordHasher:
    def __init__(
        self, *, max_concurrent_hashes: int = 1, max_pending: int = 4, **argon2_parameters: Any
    ) -> None:
        parameters = {**DEFAULT_ARGON2_PARAMETERS, **argon2_parameters}
        self._password_hash = PasswordHash((Argon2Hasher(**parameters),))
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrent_hashes,
            thread_name_prefix="argon2",
            initializer=_lower_thread_priority,
        )
        self._dummy_hash: str | None = None
        self._max_pending = max_pending
        # Counted from submission until the pool is done with the job (a cancelled caller does
        # not free the thread), under a lock because jobs finish on the pool's threads.
        self._pending = 0
        self._pending_lock = threading.Lock()

    def _release(self, _: object = None) -> None:
        with self._pending_lock:
            self._pending -= 1

    async def _run(self, fn: Any, *args: Any, wait: bool = True) -> Any:
        with self._pending_lock:
            if not wait and self._pending >= self._max_pending:
                raise HashingBusy
            self._pending += 1
        try:
            job = self._pool.submit(fn, *args)
        except BaseException:  # the pool is shut down
            self._release()
            raise
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    async def hash(self, password: str, *, wait: bool = True) -> str:
        result: str = await self._run(self._password_hash.hash, password, wait=wait)
        return result

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        try:
            matches, new_hash = await self._run(
                self._password_hash.verify_and_update, password, password_hash
            )
        except Exception:  # an unparseable stored hash never matches
            return False, None
        return bool(matches), new_hash

    async def verify_dummy(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("dummy password for timing equality")
        await self.verify(password, self._dummy_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
