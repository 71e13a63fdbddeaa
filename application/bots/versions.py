"""Optimistic concurrency for what a member edits: a bot's settings and its knowledge entries.

`If-Match` carries the version the caller read: a stale one is refused before any change (412),
and of concurrent writers of one version exactly one wins at commit.
"""

from __future__ import annotations

from application.errors import ConcurrentUpdate, Conflict, PreconditionFailed
from application.ports import UnitOfWork


def check_version(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The resource is at version {current}, not {expected}; read it again."
        )


async def commit_versioned(uow: UnitOfWork, expected_version: int | None = None) -> None:
    """A lost race is the caller's stale `If-Match` when they sent one (412), else a
    conflict with a concurrent change (409)."""
    try:
        await uow.commit()
    except ConcurrentUpdate as error:
        detail = "The resource was changed concurrently; read it again."
        if expected_version is not None:
            raise PreconditionFailed(detail) from error
        raise Conflict(detail) from error
