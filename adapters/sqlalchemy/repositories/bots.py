"""Bots, their knowledge entries and their API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.repositories.lookups import Lookup
from adapters.sqlalchemy.store import SessionSource
from application.pagination import Keyset
from application.ports import BotFilter
from domain.bots import Bot, BotApiKey, BotStatus, KnowledgeEntry


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@translating
class SqlAlchemyBotRepository:
    def __init__(self, session: SessionSource, find: Lookup[Bot]) -> None:
        self._session = session
        self._find = find

    async def add(self, bot: Bot) -> None:
        (await self._session()).add(bot)

    async def get(self, bot_id: UUID) -> Bot | None:
        return await self._find(bot_id)

    async def delete(self, bot: Bot) -> None:
        # Knowledge, keys, conversations, messages and feedback go by ON DELETE CASCADE, in the
        # same transaction, without loading them; the version check applies.
        await (await self._session()).delete(bot)

    async def list_page(self, flt: BotFilter, *, after: Keyset | None, limit: int) -> list[Bot]:
        c = tables.bots.c
        query = sa.select(Bot).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        if flt.owner_id is not None:
            query = query.where(c.owner_id == flt.owner_id)
        if flt.status is not None:
            query = query.where(c.status == flt.status)
        if flt.name_contains:
            pattern = f"%{_escape_like(flt.name_contains.lower())}%"
            query = query.where(sa.func.lower(c.name).like(pattern, escape="\\"))
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.id) < sa.tuple_(after.value, after.id))
        return list((await (await self._session()).scalars(query)).all())

    async def bump_knowledge_revision(self, bot_id: UUID, now: datetime) -> None:
        c = tables.bots.c
        session = await self._session()
        revision = await session.scalar(
            sa.update(tables.bots)
            .where(c.id == bot_id)
            .values(knowledge_revision=c.knowledge_revision + 1, updated_at=now)
            .returning(c.knowledge_revision)
        )
        loaded = session.identity_map.get(AsyncSession.identity_key(Bot, bot_id))
        if loaded is not None and revision is not None:
            # Keep a bot this transaction already loaded in step with its row, as committed
            # state (not a pending change that would be written back).
            set_committed_value(loaded, "knowledge_revision", revision)
            set_committed_value(loaded, "updated_at", now)

    async def list_chattable(self, user_id: UUID | None, *, limit: int) -> list[Bot]:
        c = tables.bots.c
        visible = c.status == BotStatus.PUBLISHED
        if user_id is not None:
            visible = sa.or_(visible, sa.and_(c.owner_id == user_id, c.status == BotStatus.DRAFT))
        query = sa.select(Bot).where(visible).order_by(c.created_at.desc(), c.id.desc())
        return list((await (await self._session()).scalars(query.limit(limit))).all())


@translating
class SqlAlchemyKnowledgeRepository:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def add(self, entry: KnowledgeEntry) -> None:
        (await self._session()).add(entry)

    async def add_many(self, entries: Sequence[KnowledgeEntry]) -> None:
        # Core executemany: multi-row INSERT batches, without the ORM's per-object bookkeeping
        # (several times faster, bench/RESULTS.md). The entries are new: nothing to track.
        if entries:
            session = await self._session()
            await session.flush()  # pending parents (a bot added just before) go first
            columns = [c.name for c in tables.knowledge_entries.columns]
            rows = [{name: getattr(entry, name) for name in columns} for entry in entries]
            await session.execute(sa.insert(tables.knowledge_entries), rows)

    async def get(self, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry | None:
        entry = await (await self._session()).get(KnowledgeEntry, entry_id)
        return entry if entry is not None and entry.bot_id == bot_id else None

    async def delete(self, entry: KnowledgeEntry) -> None:
        await (await self._session()).delete(entry)

    async def list_page(
        self, bot_id: UUID, *, after: Keyset | None, limit: int
    ) -> list[KnowledgeEntry]:
        c = tables.knowledge_entries.c
        query = (
            sa.select(KnowledgeEntry)
            .where(c.bot_id == bot_id)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.id) > sa.tuple_(after.value, after.id))
        return list((await (await self._session()).scalars(query)).all())

    async def all_for_bot(self, bot_id: UUID) -> list[KnowledgeEntry]:
        c = tables.knowledge_entries.c
        query = sa.select(KnowledgeEntry).where(c.bot_id == bot_id).order_by(c.created_at, c.id)
        return list((await (await self._session()).scalars(query)).all())


@translating
class SqlAlchemyApiKeyRepository:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def add(self, key: BotApiKey) -> None:
        (await self._session()).add(key)

    async def get(self, bot_id: UUID, key_id: UUID) -> BotApiKey | None:
        key = await (await self._session()).get(BotApiKey, key_id)
        return key if key is not None and key.bot_id == bot_id else None

    async def get_by_prefix(self, prefix: str) -> BotApiKey | None:
        query = sa.select(BotApiKey).where(tables.bot_api_keys.c.prefix == prefix)
        return (await (await self._session()).execute(query)).scalar_one_or_none()

    async def list_page(self, bot_id: UUID) -> list[BotApiKey]:
        c = tables.bot_api_keys.c
        query = sa.select(BotApiKey).where(c.bot_id == bot_id).order_by(c.created_at, c.id)
        return list((await (await self._session()).scalars(query)).all())

    async def delete(self, key: BotApiKey) -> None:
        await (await self._session()).delete(key)
