"""factory-boy factories for every entity. They build domain objects; persist them through a UoW."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import factory

from application.ports import UnitOfWorkFactory
from domain.bots import (
    DEFAULT_FALLBACK_MESSAGE,
    Bot,
    BotApiKey,
    BotStatus,
    EngineKind,
    KnowledgeEntry,
)
from domain.conversations import (
    Conversation,
    ConversationStatus,
    Feedback,
    Message,
    MessageRole,
    Rating,
)
from domain.users import RefreshToken, Role, User

_ticks = count()
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def next_time() -> datetime:
    """Strictly increasing times, so orderings in tests are deterministic."""
    return EPOCH + timedelta(milliseconds=next(_ticks))


class UserFactory(factory.Factory[User]):
    class Meta:
        model = User

    id = factory.LazyFunction(uuid.uuid4)
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    display_name = factory.Faker("name")
    password_hash = "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash"
    role = Role.MEMBER
    is_active = True
    created_at = factory.LazyFunction(next_time)
    updated_at = factory.SelfAttribute("created_at")


class RefreshTokenFactory(factory.Factory[RefreshToken]):
    class Meta:
        model = RefreshToken

    id = factory.LazyFunction(uuid.uuid4)
    user_id = factory.LazyFunction(uuid.uuid4)
    family_id = factory.LazyFunction(uuid.uuid4)
    token_hash = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    issued_at = factory.LazyFunction(next_time)
    expires_at = factory.LazyAttribute(lambda t: t.issued_at + timedelta(days=30))


class BotFactory(factory.Factory[Bot]):
    class Meta:
        model = Bot

    id = factory.LazyFunction(uuid.uuid4)
    owner_id = factory.LazyFunction(uuid.uuid4)
    name = factory.Sequence(lambda n: f"Bot {n}")
    description = "A helpful bot."
    system_prompt = ""
    greeting = "Hello! How can I help?"
    fallback_message = DEFAULT_FALLBACK_MESSAGE
    engine = EngineKind.KNOWLEDGE
    engine_config: Any = factory.LazyFunction(dict)
    status = BotStatus.DRAFT
    version = 1
    knowledge_revision = 0
    created_at = factory.LazyFunction(next_time)
    updated_at = factory.SelfAttribute("created_at")


class KnowledgeEntryFactory(factory.Factory[KnowledgeEntry]):
    class Meta:
        model = KnowledgeEntry

    id = factory.LazyFunction(uuid.uuid4)
    bot_id = factory.LazyFunction(uuid.uuid4)
    question = factory.Sequence(lambda n: f"What is question number {n}?")
    answer = factory.Sequence(lambda n: f"This is answer number {n}.")
    examples: Any = factory.LazyFunction(list)
    tags: Any = factory.LazyFunction(list)
    version = 1
    created_at = factory.LazyFunction(next_time)
    updated_at = factory.SelfAttribute("created_at")


class BotApiKeyFactory(factory.Factory[BotApiKey]):
    class Meta:
        model = BotApiKey

    id = factory.LazyFunction(uuid.uuid4)
    bot_id = factory.LazyFunction(uuid.uuid4)
    name = "test key"
    prefix = factory.Sequence(lambda n: f"cbk_{n:08d}")
    secret_hash = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    created_at = factory.LazyFunction(next_time)


class ConversationFactory(factory.Factory[Conversation]):
    class Meta:
        model = Conversation

    id = factory.LazyFunction(uuid.uuid4)
    bot_id = factory.LazyFunction(uuid.uuid4)
    user_id = factory.LazyFunction(uuid.uuid4)
    external_user_id = None
    title = ""
    status = ConversationStatus.OPEN
    message_count = 0
    last_message_at = factory.LazyFunction(next_time)
    created_at = factory.SelfAttribute("last_message_at")
    updated_at = factory.SelfAttribute("last_message_at")


class MessageFactory(factory.Factory[Message]):
    class Meta:
        model = Message

    id = factory.LazyFunction(uuid.uuid4)
    conversation_id = factory.LazyFunction(uuid.uuid4)
    seq = factory.Sequence(lambda n: n + 1)
    role = MessageRole.USER
    content = "Hello"
    metadata: Any = factory.LazyFunction(dict)
    created_at = factory.LazyFunction(next_time)


class FeedbackFactory(factory.Factory[Feedback]):
    class Meta:
        model = Feedback

    message_id = factory.LazyFunction(uuid.uuid4)
    conversation_id = factory.LazyFunction(uuid.uuid4)
    rating = Rating.UP
    comment = ""
    created_at = factory.LazyFunction(next_time)
    updated_at = factory.SelfAttribute("created_at")


async def stored_owner_and_bot(
    uow_factory: UnitOfWorkFactory, **bot_fields: object
) -> tuple[User, Bot]:
    """A user and a bot of theirs, committed through `uow_factory`."""
    owner = UserFactory()
    bot = BotFactory(owner_id=owner.id, **bot_fields)
    async with uow_factory() as uow:
        await uow.users.add(owner)
        await uow.bots.add(bot)
        await uow.commit()
    return owner, bot
