"""Conversations, their messages, and feedback on replies.

The hot write (lock a conversation, append messages) is the conversation log's
(conversation_log.py); these are the other reads and writes of the same rows.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.queries.reads import Reads
from adapters.sqlalchemy.repositories.lookups import Lookup
from adapters.sqlalchemy.store import SessionSource
from application.pagination import Keyset
from application.ports import ConversationFilter
from domain.conversations import Conversation, Feedback, Message, Rating


@translating
class SqlAlchemyConversationRepository:
    def __init__(self, session: SessionSource, find: Lookup[Conversation]) -> None:
        self._session = session
        self._find = find

    async def add(self, conversation: Conversation) -> None:
        (await self._session()).add(conversation)

    async def get(self, conversation_id: UUID) -> Conversation | None:
        return await self._find(conversation_id)

    async def get_for_update(self, conversation_id: UUID) -> Conversation | None:
        # FOR UPDATE on PostgreSQL; on SQLite the IMMEDIATE transaction already holds the lock.
        query = (
            sa.select(Conversation)
            .where(tables.conversations.c.id == conversation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await (await self._session()).execute(query)).scalar_one_or_none()

    async def delete(self, conversation: Conversation) -> None:
        """Any conversation, locked through the log or read here: by id, its messages and
        feedback with it (ON DELETE CASCADE)."""
        session = await self._session()
        c = tables.conversations.c
        await session.execute(sa.delete(tables.conversations).where(c.id == conversation.id))
        if conversation in session:
            session.expunge(conversation)

    async def list_page(
        self, flt: ConversationFilter, *, after: Keyset | None, limit: int
    ) -> list[Conversation]:
        c = tables.conversations.c
        query = sa.select(Conversation).order_by(c.last_message_at.desc(), c.id.desc()).limit(limit)
        if flt.user_id is not None:
            query = query.where(c.user_id == flt.user_id)
        if flt.bot_id is not None:
            query = query.where(c.bot_id == flt.bot_id)
        if flt.status is not None:
            query = query.where(c.status == flt.status)
        if flt.external_user_id is not None:
            query = query.where(c.external_user_id == flt.external_user_id)
        if flt.only_key_opened:
            query = query.where(c.user_id.is_(None))
        if flt.with_down_feedback:
            f = tables.feedback.c
            down = sa.select(f.conversation_id).where(f.rating == Rating.DOWN)
            query = query.where(c.id.in_(down))
        if after is not None:
            query = query.where(
                sa.tuple_(c.last_message_at, c.id) < sa.tuple_(after.value, after.id)
            )
        return list((await (await self._session()).scalars(query)).all())


@translating
class SqlAlchemyMessageRepository:
    def __init__(self, session: SessionSource, reads: Reads) -> None:
        self._session = session
        self._reads = reads

    async def add(self, message: Message) -> None:
        (await self._session()).add(message)

    async def get(self, message_id: UUID) -> Message | None:
        return await (await self._session()).get(Message, message_id)

    async def list_page(
        self, conversation_id: UUID, *, after_seq: int, limit: int
    ) -> list[Message]:
        return await self._reads.message_page(conversation_id, after_seq=after_seq, limit=limit)

    async def recent(self, conversation_id: UUID, limit: int) -> list[Message]:
        return await self._reads.recent_messages(conversation_id, limit)


@translating
class SqlAlchemyFeedbackRepository:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def add(self, feedback: Feedback) -> None:
        (await self._session()).add(feedback)

    async def get(self, message_id: UUID) -> Feedback | None:
        return await (await self._session()).get(Feedback, message_id)
