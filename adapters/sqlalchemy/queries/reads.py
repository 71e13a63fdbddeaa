"""The named reads: the caller (a user by id), a bot, a conversation, a page of messages, the
recent messages. Each is one SELECT, compiled once per dialect."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.queries.compiled import CompiledSelect, Entity
from adapters.sqlalchemy.queries.statements import Statements
from domain.bots import Bot
from domain.conversations import Conversation, Message
from domain.users import User


def by_id(table: sa.Table) -> sa.Select[Any]:
    return sa.select(table).where(table.c.id == sa.bindparam("id"))


class CompiledReads:
    """The named reads compiled for one dialect; built once per engine, shared by its units of
    work."""

    def __init__(self, dialect: Dialect) -> None:
        m = tables.messages.c
        in_conversation = m.conversation_id == sa.bindparam("conversation_id")
        self.user = CompiledSelect(by_id(tables.users), User, dialect)
        self.bot = CompiledSelect(by_id(tables.bots), Bot, dialect)
        self.conversation = CompiledSelect(by_id(tables.conversations), Conversation, dialect)
        self.message_page = CompiledSelect(
            sa.select(tables.messages)
            .where(in_conversation, m.seq > sa.bindparam("after_seq"))
            .order_by(m.seq)
            .limit(sa.bindparam("limit")),
            Message,
            dialect,
        )
        # Newest first, so the index on (conversation_id, seq) stops after `limit` rows.
        self.recent_messages = CompiledSelect(
            sa.select(tables.messages)
            .where(in_conversation)
            .order_by(m.seq.desc())
            .limit(sa.bindparam("limit")),
            Message,
            dialect,
        )


class Reads:
    """The named reads of one unit of work, run where it runs its statements."""

    def __init__(self, compiled: CompiledReads, statements: Statements) -> None:
        self._compiled = compiled
        self._statements = statements

    async def _all(self, read: CompiledSelect[Entity], **values: Any) -> list[Entity]:
        return read.rows.build(await self._statements.rows(read.statement, values))

    async def _one(self, read: CompiledSelect[Entity], entity_id: UUID) -> Entity | None:
        found = await self._all(read, id=entity_id)
        return found[0] if found else None

    async def user(self, user_id: UUID) -> User | None:
        return await self._one(self._compiled.user, user_id)

    async def bot(self, bot_id: UUID) -> Bot | None:
        return await self._one(self._compiled.bot, bot_id)

    async def conversation(self, conversation_id: UUID) -> Conversation | None:
        return await self._one(self._compiled.conversation, conversation_id)

    async def message_page(
        self, conversation_id: UUID, *, after_seq: int, limit: int
    ) -> list[Message]:
        """Oldest first, strictly after `after_seq`."""
        return await self._all(
            self._compiled.message_page,
            conversation_id=conversation_id,
            after_seq=after_seq,
            limit=limit,
        )

    async def recent_messages(self, conversation_id: UUID, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first."""
        if limit <= 0:
            return []
        newest_first = await self._all(
            self._compiled.recent_messages, conversation_id=conversation_id, limit=limit
        )
        newest_first.reverse()
        return newest_first
