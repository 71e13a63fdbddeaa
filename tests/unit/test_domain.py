"""Domain rules, with no I/O at all."""

from __future__ import annotations

import uuid

import pytest

from domain.bots import DEFAULT_FALLBACK_MESSAGE, Bot, BotStatus, KnowledgeEntry
from domain.conversations import Conversation, MessageRole
from domain.errors import (
    BotNotAcceptingMessages,
    ConversationClosed,
    InvalidTransition,
    InvalidValue,
)
from domain.users import Role, User, check_password_policy, normalize_email
from tests.factories import BotFactory, ConversationFactory, next_time

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("  Alice@Example.COM ", "alice@example.com"), ("bob@x.io", "bob@x.io")],
)
def test_emails_are_normalised(raw: str, normalised: str) -> None:
    assert normalize_email(raw) == normalised


@pytest.mark.parametrize("raw", ["", "no-at-sign", "two@@example.com", "a b@example.com", "a@b"])
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidValue):
        normalize_email(raw)


def test_password_policy() -> None:
    check_password_policy("x" * 8)
    check_password_policy("x" * 128)
    for bad in ["x" * 7, "x" * 129]:
        with pytest.raises(InvalidValue):
            check_password_policy(bad)


def test_registered_users_are_active_members() -> None:
    user = User.register(
        id=uuid.uuid4(),
        email=" New@Example.com",
        display_name="  New ",
        password_hash="h",
        now=next_time(),
    )
    assert (user.email, user.display_name, user.role, user.is_active) == (
        "new@example.com",
        "New",
        Role.MEMBER,
        True,
    )
    assert not user.is_admin


def test_bot_lifecycle_draft_published_archived() -> None:
    bot = Bot.create(id=uuid.uuid4(), owner_id=uuid.uuid4(), name=" Helper ", now=next_time())
    assert (bot.name, bot.status, bot.version) == ("Helper", BotStatus.DRAFT, 1)
    assert bot.fallback_message == DEFAULT_FALLBACK_MESSAGE
    bot.publish(next_time())
    assert (bot.status, bot.version) == (BotStatus.PUBLISHED, 2)
    bot.publish(next_time())  # publishing twice changes nothing
    assert bot.version == 2
    bot.ensure_accepts_messages()
    bot.archive(next_time())
    assert bot.status is BotStatus.ARCHIVED
    with pytest.raises(BotNotAcceptingMessages):
        bot.ensure_accepts_messages()
    with pytest.raises(InvalidTransition):
        bot.publish(next_time())


def test_configuring_a_bot_bumps_its_version_but_knowledge_does_not() -> None:
    bot = BotFactory()
    bot.configure({"name": "Renamed", "engine_config": {"k": 1}}, next_time())
    assert (bot.name, bot.engine_config, bot.version) == ("Renamed", {"k": 1}, 2)
    bot.note_knowledge_changed(next_time())
    assert (bot.version, bot.knowledge_revision) == (2, 1)
    with pytest.raises(InvalidValue):
        bot.configure({"owner_id": uuid.uuid4()}, next_time())
    with pytest.raises(InvalidValue):
        bot.configure({"name": "   "}, next_time())


def test_knowledge_entries_clean_their_fields() -> None:
    entry = KnowledgeEntry.create(
        id=uuid.uuid4(),
        bot_id=uuid.uuid4(),
        question=" How? ",
        answer="Like this.",
        examples=["  one ", "", "two"],
        tags=["A", "a", " b "],
        now=next_time(),
    )
    assert (entry.question, entry.examples, entry.tags) == ("How?", ["one", "two"], ["a", "b"])
    entry.revise(next_time(), answer="Differently.")
    assert (entry.answer, entry.version) == ("Differently.", 2)
    with pytest.raises(InvalidValue):
        entry.revise(next_time(), question="")


def test_messages_get_gap_free_sequence_numbers() -> None:
    conversation = ConversationFactory()
    seqs = [
        conversation.append(message_id=uuid.uuid4(), role=role, content="hi", now=next_time()).seq
        for role in [MessageRole.ASSISTANT, MessageRole.USER, MessageRole.ASSISTANT]
    ]
    assert seqs == [1, 2, 3]
    assert conversation.message_count == 3


def test_a_closed_conversation_refuses_messages() -> None:
    conversation = Conversation.start(id=uuid.uuid4(), bot_id=uuid.uuid4(), now=next_time())
    conversation.close(next_time())
    with pytest.raises(ConversationClosed):
        conversation.append(
            message_id=uuid.uuid4(), role=MessageRole.USER, content="hi", now=next_time()
        )
    assert conversation.message_count == 0


def test_user_messages_are_bounded() -> None:
    conversation = ConversationFactory()
    for content in ["", "x" * 8001]:
        with pytest.raises(InvalidValue):
            conversation.append(
                message_id=uuid.uuid4(), role=MessageRole.USER, content=content, now=next_time()
            )


def test_a_reply_is_recorded_to_a_message_the_conversation_accepted_even_once_closed() -> None:
    now = next_time()
    conversation = Conversation.start(id=uuid.uuid4(), bot_id=uuid.uuid4(), now=now)
    asked = conversation.append(
        message_id=uuid.uuid4(), role=MessageRole.USER, content="hi", now=now
    )
    conversation.close(now)
    reply = conversation.record_reply(
        answering=asked, message_id=uuid.uuid4(), content="hello", now=now
    )
    assert (reply.seq, reply.role, conversation.message_count) == (2, MessageRole.ASSISTANT, 2)
    assert not conversation.is_open
    other = Conversation.start(id=uuid.uuid4(), bot_id=conversation.bot_id, now=now)
    with pytest.raises(InvalidValue):
        other.record_reply(answering=asked, message_id=uuid.uuid4(), content="x", now=now)
    with pytest.raises(InvalidValue):
        conversation.record_reply(answering=reply, message_id=uuid.uuid4(), content="x", now=now)
