"""Conversation use cases, one room per intention: threads, chat, idempotency, feedback,
stats, export data. `ConversationUseCases.build` wires them as the composition root does."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from application.conversations.chat import HISTORY_WINDOW, Chat
from application.conversations.events import (
    ExchangeEvent,
    ReplyDelta,
    ReplyStored,
    UserMessageStored,
)
from application.conversations.export import ConversationExport, Exports
from application.conversations.feedback import ReplyRatings
from application.conversations.idempotency import REPLY_LEASE, IdempotencyKeys
from application.conversations.stats import BotStatsView, ConversationStats
from application.conversations.threads import Threads
from application.ports import Clock, IdGenerator, ReplyEngine, UnitOfWorkFactory
from domain.bots import EngineKind

__all__ = [
    "HISTORY_WINDOW",
    "REPLY_LEASE",
    "BotStatsView",
    "Chat",
    "ConversationExport",
    "ConversationStats",
    "ConversationUseCases",
    "ExchangeEvent",
    "Exports",
    "IdempotencyKeys",
    "ReplyDelta",
    "ReplyRatings",
    "ReplyStored",
    "Threads",
    "UserMessageStored",
]


@dataclass(frozen=True)
class ConversationUseCases:
    threads: Threads
    chat: Chat
    idempotency: IdempotencyKeys
    ratings: ReplyRatings
    stats: ConversationStats
    exports: Exports

    @classmethod
    def build(
        cls,
        *,
        uow_factory: UnitOfWorkFactory,
        engines: Mapping[EngineKind, ReplyEngine],
        clock: Clock,
        ids: IdGenerator,
        monotonic: Callable[[], float] = time.perf_counter,
        reply_lease: timedelta = REPLY_LEASE,
    ) -> ConversationUseCases:
        threads = Threads(uow_factory=uow_factory, clock=clock, ids=ids)
        keys = IdempotencyKeys(uow_factory=uow_factory, clock=clock, lease=reply_lease)
        chat = Chat(
            uow_factory=uow_factory,
            engines=engines,
            clock=clock,
            ids=ids,
            keys=keys,
            threads=threads,
            monotonic=monotonic,
        )
        return cls(
            threads=threads,
            chat=chat,
            idempotency=keys,
            ratings=ReplyRatings(uow_factory=uow_factory, clock=clock),
            stats=ConversationStats(uow_factory=uow_factory),
            exports=Exports(uow_factory=uow_factory),
        )
