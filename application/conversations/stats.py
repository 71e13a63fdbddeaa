"""How a bot is doing: conversations, messages, fallback rate, feedback, reply latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from uuid import UUID

from application.access import manageable_bot
from application.actors import Actor
from application.ports import UnitOfWorkFactory


@dataclass(frozen=True)
class BotStatsView:
    conversations: int
    messages: int
    replies: int
    fallback_rate: float
    feedback_up: int
    feedback_down: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


def _percentile(sorted_values: list[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)  # nearest-rank
    return float(sorted_values[rank])


class ConversationStats:
    def __init__(self, *, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    async def bot_stats(self, actor: Actor, bot_id: UUID) -> BotStatsView:
        """Conversations, messages, fallback rate, feedback and reply latency percentiles."""
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            stats = await uow.stats.bot_stats(bot_id)
        latencies = sorted(stats.reply_latencies_ms)
        return BotStatsView(
            conversations=stats.conversations,
            messages=stats.messages,
            replies=stats.replies,
            fallback_rate=round(stats.fallbacks / stats.replies, 4) if stats.replies else 0.0,
            feedback_up=stats.feedback_up,
            feedback_down=stats.feedback_down,
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p95_ms=_percentile(latencies, 0.95),
        )
