"""A bot's figures: conversations, messages, replies, fallbacks, feedback, reply latencies."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.store import SessionSource
from application.ports import BotStats
from domain.conversations import MessageRole, Rating

# The last this many replies are enough for stable latency percentiles, and bound the query.
LATENCY_SAMPLE = 10_000


@translating
class SqlAlchemyStatsReader:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def bot_stats(self, bot_id: UUID) -> BotStats:
        session = await self._session()
        conv, msg, fb = tables.conversations.c, tables.messages.c, tables.feedback.c
        in_bot = sa.select(conv.id).where(conv.bot_id == bot_id).scalar_subquery()
        conversations = await session.scalar(
            sa.select(sa.func.count()).where(conv.bot_id == bot_id)
        )
        is_reply = msg.role == MessageRole.ASSISTANT
        # Greetings are assistant messages too, but only engine replies carry a latency.
        is_engine_reply = sa.and_(is_reply, msg.metadata["latency_ms"].as_integer().is_not(None))
        fallback = msg.metadata["fallback"].as_boolean().is_(True)
        counts = (
            await session.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(is_engine_reply),
                    sa.func.count().filter(sa.and_(is_engine_reply, fallback)),
                ).where(msg.conversation_id.in_(in_bot))
            )
        ).one()
        ratings: dict[Rating, int] = dict(
            (
                await session.execute(
                    sa.select(fb.rating, sa.func.count())
                    .where(fb.conversation_id.in_(in_bot))
                    .group_by(fb.rating)
                )
            ).all()
        )
        latencies = (
            await session.scalars(
                sa.select(msg.metadata["latency_ms"].as_integer())
                .where(msg.conversation_id.in_(in_bot), is_engine_reply)
                .order_by(msg.created_at.desc())
                .limit(LATENCY_SAMPLE)
            )
        ).all()
        return BotStats(
            conversations=int(conversations or 0),
            messages=int(counts[0]),
            replies=int(counts[1]),
            fallbacks=int(counts[2]),
            feedback_up=int(ratings.get(Rating.UP, 0)),
            feedback_down=int(ratings.get(Rating.DOWN, 0)),
            reply_latencies_ms=[int(v) for v in latencies if v is not None],
        )
