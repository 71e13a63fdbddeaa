"""How a repository finds an entity by id, chosen per kind of unit of work when it is built.

Read-only units of work use the named reads (queries/reads.py): nothing they read is changed,
so nothing needs tracking. Writing units of work read through the session, which tracks what
they change — bots included, which are read with the named read and handed to the session as
loaded, so its version check guards their changes (`tracked`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from adapters.sqlalchemy.store import SessionSource

Entity = TypeVar("Entity")
Lookup = Callable[[UUID], Awaitable[Entity | None]]


def through_session(session: SessionSource, entity: type[Entity]) -> Lookup[Entity]:
    async def get(entity_id: UUID) -> Entity | None:
        return await (await session()).get(entity, entity_id)

    return get


def tracked(session: SessionSource, entity: type[Entity], read: Lookup[Entity]) -> Lookup[Entity]:
    """`read`, whose entity the session then tracks as if it had loaded it (the one it already
    holds, if it does)."""

    async def get(entity_id: UUID) -> Entity | None:
        current: AsyncSession = await session()
        known = current.identity_map.get(AsyncSession.identity_key(entity, entity_id))
        if known is not None:
            return known  # type: ignore[no-any-return]
        found = await read(entity_id)
        if found is not None:
            make_transient_to_detached(found)  # "as loaded": no pending change, no INSERT
            current.add(found)
        return found

    return get
