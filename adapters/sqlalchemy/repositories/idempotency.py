"""First answers to requests that carried an Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.store import SessionSource
from application.ports import IdempotencyRecord


@translating
class SqlAlchemyIdempotencyRepository:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def get(self, principal: str, key: str) -> IdempotencyRecord | None:
        return await (await self._session()).get(IdempotencyRecord, (principal, key))

    async def add(self, record: IdempotencyRecord) -> None:
        # A concurrent first attempt with the same key loses at commit:
        # DuplicateKey(resource="idempotency_keys").
        (await self._session()).add(record)

    async def purge_older_than(self, cutoff: datetime) -> int:
        c = tables.idempotency_keys.c
        result = await (await self._session()).execute(
            sa.delete(tables.idempotency_keys).where(c.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)
