"""Posting a message, at the application level on every storage adapter: the events come in
one order whatever the path, and none is handed out while a transaction or a lock is held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from adapters.system import RandomIdGenerator
from application.actors import UserActor
from application.conversations import (
    ConversationUseCases,
    ReplyDelta,
    ReplyStored,
    UserMessageStored,
)
from application.errors import NotFound, UpstreamFailed
from application.ports import (
    Reply,
    ReplyChunk,
    ReplyDone,
    ReplyEvent,
    ReplyRequest,
    UnitOfWorkFactory,
)
from domain.bots import Bot, BotStatus, EngineKind
from tests.factories import stored_owner_and_bot
from tests.fakes import FixedClock

pytestmark = pytest.mark.integration


class ScriptedEngine:
    """Answers now, or with I/O (optionally held at a gate), or fails after a first piece."""

    def __init__(self) -> None:
        self.now = False
        self.fail = False
        self.gate: asyncio.Event | None = None

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        return Reply(f"now: {message}", {"engine": "scripted"}) if self.now else None

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        yield ReplyChunk("part one, ")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise UpstreamFailed("the upstream broke")
        yield ReplyChunk(f"then: {request.message}")
        yield ReplyDone({"engine": "scripted"})


async def _world(
    uow_factory: UnitOfWorkFactory,
) -> tuple[ConversationUseCases, ScriptedEngine, UserActor, UUID]:
    owner, bot = await stored_owner_and_bot(
        uow_factory, engine=EngineKind.OPENAI, status=BotStatus.PUBLISHED, greeting=""
    )
    engine = ScriptedEngine()
    cases = ConversationUseCases.build(
        uow_factory=uow_factory,
        engines={EngineKind.OPENAI: engine, EngineKind.KNOWLEDGE: engine},
        clock=FixedClock(),
        ids=RandomIdGenerator(),
    )
    actor = UserActor(owner.id, owner.role)
    conversation = await cases.threads.start_conversation(actor, bot.id)
    return cases, engine, actor, conversation.id


async def _lockable(uow_factory: UnitOfWorkFactory, conversation_id: UUID) -> None:
    """Another request can lock the conversation right now (nothing else holds it)."""

    async def lock() -> None:
        async with uow_factory() as uow:
            assert await uow.conversation_log.lock(conversation_id) is not None
            await uow.commit()

    await asyncio.wait_for(lock(), timeout=5)


async def _events(
    cases: ConversationUseCases,
    actor: UserActor,
    conversation_id: UUID,
    text: str,
    key: str | None,
    uow_factory: UnitOfWorkFactory,
) -> list[type]:
    kinds: list[type] = []
    async for event in cases.chat.post_message(actor, conversation_id, text, idempotency_key=key):
        kinds.append(type(event))
        await _lockable(uow_factory, conversation_id)  # while the generator is suspended here
    return kinds


@pytest.mark.parametrize("answers_now", [True, False], ids=["answer-now", "with-io"])
async def test_live_and_replayed_answers_yield_the_same_events_and_hold_nothing(
    uow_factory: UnitOfWorkFactory, answers_now: bool
) -> None:
    cases, engine, actor, conversation_id = await _world(uow_factory)
    engine.now = answers_now
    live = await _events(cases, actor, conversation_id, "hi", "key-1", uow_factory)
    replayed = await _events(cases, actor, conversation_id, "hi", "key-1", uow_factory)
    expected_deltas = 1 if answers_now else 2
    assert live == [UserMessageStored, *[ReplyDelta] * expected_deltas, ReplyStored]
    assert replayed == [UserMessageStored, ReplyDelta, ReplyStored]


async def test_a_failure_and_its_replay_yield_the_same_events(
    uow_factory: UnitOfWorkFactory,
) -> None:
    cases, engine, actor, conversation_id = await _world(uow_factory)
    engine.fail = True
    for attempt in ("live", "replay"):
        seen: list[type] = []
        with pytest.raises(UpstreamFailed):
            async for event in cases.chat.post_message(
                actor, conversation_id, "hi", idempotency_key="key-2"
            ):
                seen.append(type(event))
                await _lockable(uow_factory, conversation_id)
        assert seen[0] is UserMessageStored, attempt
        assert ReplyStored not in seen, attempt
    page = await cases.threads.list_messages(actor, conversation_id)
    assert [m.content for m in page.items] == ["hi"]  # stored once, kept after the failure


async def test_a_conversation_closed_while_answering_still_gets_its_reply(
    uow_factory: UnitOfWorkFactory,
) -> None:
    cases, engine, actor, conversation_id = await _world(uow_factory)
    engine.gate = asyncio.Event()
    events = cases.chat.post_message(actor, conversation_id, "hi")
    assert isinstance(await anext(events), UserMessageStored)
    assert isinstance(await anext(events), ReplyDelta)
    await cases.threads.close_conversation(actor, conversation_id)
    engine.gate.set()
    rest = [event async for event in events]
    assert isinstance(rest[-1], ReplyStored)
    conversation = await cases.threads.get_conversation(actor, conversation_id)
    assert conversation.status.value == "closed"
    assert conversation.message_count == 2
    page = await cases.threads.list_messages(actor, conversation_id)
    assert [(m.seq, m.role.value) for m in page.items] == [(1, "user"), (2, "assistant")]


async def test_a_conversation_deleted_while_answering_stores_nothing_more(
    uow_factory: UnitOfWorkFactory,
) -> None:
    cases, engine, actor, conversation_id = await _world(uow_factory)
    engine.gate = asyncio.Event()
    events = cases.chat.post_message(actor, conversation_id, "hi")
    await anext(events)
    await anext(events)
    await cases.threads.delete_conversation(actor, conversation_id)
    engine.gate.set()
    with pytest.raises(NotFound, match="deleted"):
        async for _ in events:
            pass
    with pytest.raises(NotFound):
        await cases.threads.get_conversation(actor, conversation_id)


@pytest.mark.parametrize("answers_now", [True, False], ids=["answer-now", "with-io"])
async def test_every_reply_records_the_bot_version_and_knowledge_that_produced_it(
    uow_factory: UnitOfWorkFactory, answers_now: bool
) -> None:
    cases, engine, actor, conversation_id = await _world(uow_factory)
    engine.now = answers_now
    events = [e async for e in cases.chat.post_message(actor, conversation_id, "hi")]
    reply = events[-1]
    assert isinstance(reply, ReplyStored)
    conversation = await cases.threads.get_conversation(actor, conversation_id)
    async with uow_factory(read_only=True) as uow:
        bot = await uow.bots.get(conversation.bot_id)
    assert bot is not None
    assert reply.message.metadata["version"] == bot.version
    assert reply.message.metadata["knowledge_revision"] == bot.knowledge_revision
