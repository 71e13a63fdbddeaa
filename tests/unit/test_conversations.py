"""Conversation use cases on the in-memory adapters, with the real knowledge engine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial

import pytest

from adapters.engines.config import EngineConfigValidator
from adapters.engines.knowledge import KnowledgeEngine
from adapters.memory import InMemoryDatabase, InMemoryUnitOfWork
from adapters.system import RandomIdGenerator
from application.actors import UserActor
from application.bots import BotKnowledge, BotLifecycle, BotSettings, load_knowledge
from application.conversations import (
    HISTORY_WINDOW,
    ConversationUseCases,
    ReplyDelta,
    ReplyStored,
    UserMessageStored,
)
from application.errors import Conflict, UpstreamFailed
from application.ports import Reply, ReplyChunk, ReplyEvent, ReplyRequest
from domain.bots import Bot, EngineKind, KnowledgeDraft
from domain.conversations import MessageRole
from domain.errors import BotNotAcceptingMessages, ConversationClosed, InvalidValue
from domain.users import Role
from tests.factories import UserFactory
from tests.fakes import FixedClock

pytestmark = pytest.mark.unit


class FailingEngine:
    """An upstream that breaks after a first piece of text (what a cut stream looks like)."""

    def __init__(self) -> None:
        self.requests: list[ReplyRequest] = []

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        return None  # an upstream is always I/O

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        self.requests.append(request)
        yield ReplyChunk("partial ")
        raise UpstreamFailed("the upstream closed the stream")


@pytest.fixture
def db() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def failing() -> FailingEngine:
    return FailingEngine()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def services(
    db: InMemoryDatabase, failing: FailingEngine, clock: FixedClock
) -> tuple[BotLifecycle, ConversationUseCases]:
    uow_factory = partial(InMemoryUnitOfWork, db)
    ids = RandomIdGenerator()
    knowledge = KnowledgeEngine(partial(load_knowledge, uow_factory))
    bots = BotLifecycle(
        uow_factory=uow_factory, engine_rules=EngineConfigValidator(), clock=clock, ids=ids
    )
    conversations = ConversationUseCases.build(
        uow_factory=uow_factory,
        engines={EngineKind.KNOWLEDGE: knowledge, EngineKind.OPENAI: failing},
        clock=clock,
        ids=ids,
    )
    return bots, conversations


@pytest.fixture
def knowledge(db: InMemoryDatabase, clock: FixedClock) -> BotKnowledge:
    return BotKnowledge(
        uow_factory=partial(InMemoryUnitOfWork, db), clock=clock, ids=RandomIdGenerator()
    )


async def _user(db: InMemoryDatabase) -> UserActor:
    user = UserFactory()
    async with InMemoryUnitOfWork(db) as uow:
        await uow.users.add(user)
        await uow.commit()
    return UserActor(user.id, Role.MEMBER)


async def _exchange(
    conversations: ConversationUseCases,
    actor: UserActor,
    conversation_id: uuid.UUID,
    text: str,
    key: str | None = None,
) -> list[object]:
    events = conversations.chat.post_message(actor, conversation_id, text, idempotency_key=key)
    return [e async for e in events]


async def _shop_conversation(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases]
) -> tuple[UserActor, uuid.UUID, uuid.UUID]:
    """A member, their knowledge bot "Shop", and a conversation with it."""
    bots, conversations = services
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Shop"))
    conversation = await conversations.threads.start_conversation(owner, bot.id)
    return owner, bot.id, conversation.id


async def test_exchange_events_and_flat_history(
    db: InMemoryDatabase,
    services: tuple[BotLifecycle, ConversationUseCases],
    knowledge: BotKnowledge,
) -> None:
    bots, conversations = services
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Shop", greeting="Hi!"))
    await knowledge.add_entry(
        owner, bot.id, KnowledgeDraft("Opening hours?", "9 to 5.", ["when are you open"])
    )
    conversation = await conversations.threads.start_conversation(owner, bot.id)
    events = await _exchange(conversations, owner, conversation.id, "when are you open")
    assert isinstance(events[0], UserMessageStored)
    assert all(isinstance(e, ReplyDelta) for e in events[1:-1])
    assert isinstance(events[-1], ReplyStored)
    assert events[-1].message.content == "9 to 5."
    assert events[-1].message.seq == 3


async def _answer_through_the_failing_engine(
    bots: BotLifecycle, owner: UserActor, bot_id: uuid.UUID
) -> None:
    """Turns the bot into an `openai` one: the `failing` fixture answers for that engine."""
    await bots.update_bot(
        owner,
        bot_id,
        {"engine": EngineKind.OPENAI, "engine_config": {"base_url": "http://x", "model": "m"}},
    )


async def test_engines_that_answer_with_io_see_a_bounded_window_of_history(
    db: InMemoryDatabase,
    services: tuple[BotLifecycle, ConversationUseCases],
    failing: FailingEngine,
) -> None:
    bots, conversations = services
    owner, bot_id, conversation_id = await _shop_conversation(db, services)
    for i in range(15):
        await _exchange(conversations, owner, conversation_id, f"m{i}")
    await _answer_through_the_failing_engine(bots, owner, bot_id)
    with pytest.raises(UpstreamFailed):
        await _exchange(conversations, owner, conversation_id, "last")
    [request] = failing.requests
    assert len(request.history) == HISTORY_WINDOW
    assert request.history[-1].content != "last"  # the new message comes separately
    assert request.message == "last"


async def test_a_failing_engine_keeps_the_user_message(
    db: InMemoryDatabase,
    services: tuple[BotLifecycle, ConversationUseCases],
    failing: FailingEngine,
) -> None:
    bots, conversations = services
    owner = await _user(db)
    bot = await bots.create_bot(
        owner,
        BotSettings(
            name="LLM",
            engine=EngineKind.OPENAI,
            engine_config={"base_url": "http://x", "model": "m"},
        ),
    )
    conversation = await conversations.threads.start_conversation(owner, bot.id)
    seen: list[object] = []
    with pytest.raises(UpstreamFailed):
        async for event in conversations.chat.post_message(
            owner, conversation.id, "hi", idempotency_key="k"
        ):
            seen.append(event)
    assert isinstance(seen[0], UserMessageStored)
    page = await conversations.threads.list_messages(owner, conversation.id)
    assert [m.content for m in page.items] == ["hi"]
    with pytest.raises(UpstreamFailed):  # the retry replays the failure, storing nothing new
        await _exchange(conversations, owner, conversation.id, "hi", key="k")
    assert len((await conversations.threads.list_messages(owner, conversation.id)).items) == 1
    with pytest.raises(UpstreamFailed):  # without the key it is a new message
        await _exchange(conversations, owner, conversation.id, "hi")
    assert len((await conversations.threads.list_messages(owner, conversation.id)).items) == 2


async def test_a_loaded_knowledge_index_answers_in_the_transaction_of_the_message(
    db: InMemoryDatabase,
    services: tuple[BotLifecycle, ConversationUseCases],
    knowledge: BotKnowledge,
    clock: FixedClock,
) -> None:
    """The first post loads the bot's index between two transactions (a request holding a
    connection must not wait for another); later posts store both messages in one."""
    owner, bot_id, conversation_id = await _shop_conversation(db, services)
    await knowledge.add_entry(
        owner, bot_id, KnowledgeDraft("Opening hours?", "9 to 5.", ["when are you open"])
    )
    writing: list[bool] = []

    def counting_uow(*, read_only: bool = False) -> InMemoryUnitOfWork:
        if not read_only:
            writing.append(True)
        return InMemoryUnitOfWork(db, read_only=read_only)

    conversations = ConversationUseCases.build(
        uow_factory=counting_uow,
        engines={EngineKind.KNOWLEDGE: KnowledgeEngine(partial(load_knowledge, counting_uow))},
        clock=clock,
        ids=RandomIdGenerator(),
    )
    first = await _exchange(conversations, owner, conversation_id, "when are you open")
    assert len(writing) == 2
    second = await _exchange(conversations, owner, conversation_id, "when are you open", key="k")
    assert len(writing) == 3
    for events in (first, second):  # the same events either way
        assert isinstance(events[0], UserMessageStored)
        assert "".join(e.text for e in events[1:-1] if isinstance(e, ReplyDelta)) == "9 to 5."
        assert isinstance(events[-1], ReplyStored)
        assert events[-1].message.metadata["engine"] == "knowledge"
        assert events[-1].message.metadata["latency_ms"] >= 0
    replayed = await _exchange(conversations, owner, conversation_id, "when are you open", "k")
    kept = [e.message.id for e in replayed if not isinstance(e, ReplyDelta)]
    assert kept == [e.message.id for e in (second[0], second[-1])]
    page = await conversations.threads.list_messages(owner, conversation_id)
    assert [m.seq for m in page.items] == [1, 2, 3, 4]


async def test_closed_and_archived(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases]
) -> None:
    bots, conversations = services
    owner, bot_id, conversation_id = await _shop_conversation(db, services)
    await conversations.threads.close_conversation(owner, conversation_id)
    with pytest.raises(ConversationClosed):
        await _exchange(conversations, owner, conversation_id, "hi")
    await bots.archive_bot(owner, bot_id)
    with pytest.raises(BotNotAcceptingMessages):
        await conversations.threads.start_conversation(owner, bot_id)


async def test_concurrent_posts_stay_gap_free(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases]
) -> None:
    _, conversations = services
    owner, _, conversation_id = await _shop_conversation(db, services)
    await asyncio.gather(
        *(_exchange(conversations, owner, conversation_id, f"m{i}") for i in range(20))
    )
    page = await conversations.threads.list_messages(owner, conversation_id, limit=100)
    assert [m.seq for m in page.items] == list(range(1, 41))


async def test_idempotency_key_reused_for_other_content(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases]
) -> None:
    _, conversations = services
    owner, _, conversation_id = await _shop_conversation(db, services)
    await _exchange(conversations, owner, conversation_id, "a", key="k")
    with pytest.raises(Conflict):
        await _exchange(conversations, owner, conversation_id, "b", key="k")


async def test_expired_idempotency_keys_are_purged(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases], clock: FixedClock
) -> None:
    _, conversations = services
    owner, _, conversation_id = await _shop_conversation(db, services)
    await _exchange(conversations, owner, conversation_id, "a", key="k")
    assert await conversations.idempotency.purge_expired() == 0
    clock.advance(hours=25)
    assert await conversations.idempotency.purge_expired() == 1


async def test_chat_completions_refuse_bad_last_messages_before_opening_a_conversation(
    db: InMemoryDatabase, services: tuple[BotLifecycle, ConversationUseCases]
) -> None:
    _, conversations = services
    owner, bot_id, _ = await _shop_conversation(db, services)
    for turns in (
        [(MessageRole.USER, "x" * 8001)],
        [(MessageRole.ASSISTANT, "hello")],
        [(MessageRole.USER, "   ")],
    ):
        with pytest.raises(InvalidValue):
            await conversations.chat.complete_chat(owner, bot_id, turns)
    assert len((await conversations.threads.list_conversations(owner)).items) == 1
