"""An Idempotency-Key whose attempt died is taken over by a retry, on every storage adapter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from adapters.system import RandomIdGenerator
from application.actors import UserActor
from application.conversations import (
    REPLY_LEASE,
    ConversationUseCases,
    ReplyDelta,
    ReplyStored,
    UserMessageStored,
)
from application.errors import Conflict
from application.ports import Reply, ReplyChunk, ReplyEvent, ReplyRequest, UnitOfWorkFactory
from domain.bots import Bot, BotStatus, EngineKind
from tests.factories import stored_owner_and_bot
from tests.fakes import FixedClock

pytestmark = pytest.mark.security


class UpstreamEngine:
    """Answers with I/O (like the openai engine); `hang` makes it never finish."""

    def __init__(self) -> None:
        self.hang = False
        self.requests: list[ReplyRequest] = []

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        return None

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        self.requests.append(request)
        if self.hang:
            await asyncio.Event().wait()
        yield ReplyChunk(f"answer to {request.message}")


async def _setup(
    uow_factory: UnitOfWorkFactory,
) -> tuple[ConversationUseCases, UpstreamEngine, FixedClock, UserActor, UUID]:
    owner, bot = await stored_owner_and_bot(
        uow_factory, engine=EngineKind.OPENAI, status=BotStatus.PUBLISHED
    )
    engine, clock = UpstreamEngine(), FixedClock()
    service = ConversationUseCases.build(
        uow_factory=uow_factory,
        engines={EngineKind.OPENAI: engine, EngineKind.KNOWLEDGE: engine},
        clock=clock,
        ids=RandomIdGenerator(),
    )
    actor = UserActor(owner.id, owner.role)
    conversation = await service.threads.start_conversation(actor, bot.id)
    return service, engine, clock, actor, conversation.id


async def _all(
    service: ConversationUseCases, actor: UserActor, conversation_id: UUID, text: str, key: str
) -> list[object]:
    return [
        e
        async for e in service.chat.post_message(actor, conversation_id, text, idempotency_key=key)
    ]


async def test_a_retry_after_a_dead_attempt_completes_the_exchange_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    service, engine, clock, actor, conversation_id = await _setup(uow_factory)
    engine.hang = True
    first = service.chat.post_message(actor, conversation_id, "hello", idempotency_key="k1")
    stored = await anext(first)
    assert isinstance(stored, UserMessageStored)
    await first.aclose()  # the attempt dies while the upstream is answering

    engine.hang = False
    with pytest.raises(Conflict, match="in progress"):
        await _all(service, actor, conversation_id, "hello", "k1")

    clock.advance(seconds=REPLY_LEASE.total_seconds() + 1)
    events = await _all(service, actor, conversation_id, "hello", "k1")
    assert isinstance(events[0], UserMessageStored)
    assert events[0].message.id == stored.message.id  # the first attempt's message, not a new one
    assert isinstance(events[-1], ReplyStored)
    assert events[-1].message.content == "answer to hello"
    # The engine saw the history before the message, not the message twice.
    assert all(m.id != stored.message.id for m in engine.requests[-1].history)

    page = await service.threads.list_messages(actor, conversation_id)
    roles = [m.role.value for m in page.items]  # after the bot's greeting, if it has one
    assert roles.count("user") == 1
    assert roles[-2:] == ["user", "assistant"]

    replayed = await _all(service, actor, conversation_id, "hello", "k1")
    assert [type(e) for e in replayed] == [UserMessageStored, ReplyDelta, ReplyStored]
    assert isinstance(replayed[-1], ReplyStored)
    assert replayed[-1].message.id == events[-1].message.id


async def test_a_live_attempt_keeps_its_key_and_another_request_cannot_take_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    service, engine, clock, actor, conversation_id = await _setup(uow_factory)
    engine.hang = True
    first = service.chat.post_message(actor, conversation_id, "hello", idempotency_key="k2")
    await anext(first)
    await first.aclose()
    clock.advance(seconds=REPLY_LEASE.total_seconds() + 1)
    with pytest.raises(Conflict, match="different request"):
        await _all(service, actor, conversation_id, "other", "k2")
