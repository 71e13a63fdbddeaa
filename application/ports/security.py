"""Security services the identity use cases call: password hashing, access tokens, attempt
counting.

Kept apart from the store: none of them persists through a unit of work, and each has its own
adapter (`adapters/auth`, `adapters/throttling`). `HashingBusy` is the hasher's refusal to queue
behind a full capacity, so it lives with the hasher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.users import User


class HashingBusy(Exception):
    """The password hashing capacity is taken: raised instead of queueing behind it."""


class PasswordHasher(Protocol):
    async def hash(self, password: str, *, wait: bool = True) -> str:
        """With `wait=False`, raises `HashingBusy` at once when the hashes already running or
        queued fill the capacity, so a flood of such calls cannot delay the ones that wait."""
        ...

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Returns (matches, new_hash); `new_hash` is set when the parameters changed."""
        ...

    async def verify_dummy(self, password: str) -> None:
        """Spends the time of one verification, so unknown accounts answer as slowly as known."""
        ...


@dataclass(frozen=True)
class AccessClaims:
    user_id: UUID
    role: str
    token_id: str
    expires_at: datetime
    session_generation: int = 0


class AccessTokenIssuer(Protocol):
    def issue(self, user: User, now: datetime) -> tuple[str, int]:
        """Returns the signed token and its lifetime in seconds."""
        ...

    def verify(self, token: str, now: datetime) -> AccessClaims:
        """Raises `AuthenticationFailed` for any token that is not one of ours and current."""
        ...


class AttemptCounter(Protocol):
    """Counts attempts per key in a fixed window that starts at the first one; shared between
    workers when Redis-backed. `hit` is atomic, so callers count first and check the count after:
    concurrent attempts can never all see the same old count and all pass."""

    async def hit(self, key: str, window_seconds: int) -> tuple[int, int]:
        """Records one attempt; returns (attempts in the window with this one, seconds until the
        window ends)."""
        ...

    async def refund(self, key: str) -> None:
        """Takes back one attempt that turned out not to be a failure. The window keeps its end;
        at zero it is gone (a count never goes below zero)."""
        ...

    async def count(self, key: str) -> tuple[int, int]:
        """Returns (attempts in the window, seconds until the window ends)."""
        ...

    async def reset(self, key: str) -> None: ...
