"""Test doubles for ports whose real adapters are slow or nondeterministic (time, hashing cost)."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.auth.passwords import Argon2PasswordHasher
from tests.factories import EPOCH


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def cheap_hasher() -> Argon2PasswordHasher:
    """The real Argon2id hasher with minimal cost parameters: same code path, milliseconds."""
    return Argon2PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
