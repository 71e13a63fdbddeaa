"""The conversation log's named operations, the same on every adapter: lock a conversation,
append an exchange, in one unit of work."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest

from application.errors import DuplicateKey
from application.ports import UnitOfWorkFactory
from domain.conversations import Conversation, ConversationStatus, Message, MessageRole
from tests.factories import ConversationFactory, next_time, stored_owner_and_bot

pytestmark = pytest.mark.contract


async def _stored_conversation(uow_factory: UnitOfWorkFactory) -> Conversation:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation = ConversationFactory(bot_id=bot.id, user_id=owner.id)
    async with uow_factory() as uow:
        await uow.conversations.add(conversation)
        await uow.commit()
    return conversation


def _exchange(conversation: Conversation, question: str, now: datetime) -> list[Message]:
    asked = conversation.append(
        message_id=uuid.uuid4(), role=MessageRole.USER, content=question, now=now
    )
    answered = conversation.append(
        message_id=uuid.uuid4(),
        role=MessageRole.ASSISTANT,
        content=f"about {question}",
        now=now,
        metadata={"engine": "knowledge", "confidence": 0.5, "sources": []},
    )
    return [asked, answered]


async def _stored(
    uow_factory: UnitOfWorkFactory, conversation_id: uuid.UUID
) -> tuple[Conversation, list[Message]]:
    async with uow_factory(read_only=True) as uow:
        conversation = await uow.conversations.get(conversation_id)
        messages = await uow.messages.list_page(conversation_id, after_seq=0, limit=100)
    assert conversation is not None
    return conversation, messages


async def test_lock_and_append_an_exchange(uow_factory: UnitOfWorkFactory) -> None:
    conversation = await _stored_conversation(uow_factory)
    now = next_time()
    async with uow_factory() as uow:
        assert await uow.conversation_log.lock(uuid.uuid4()) is None
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        assert (locked.id, locked.message_count) == (conversation.id, 0)
        exchange = _exchange(locked, "opening hours", now)
        await uow.conversation_log.append(locked, exchange)
        await uow.commit()
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        assert locked.message_count == 2  # the next lock reads the stored counters
        await uow.conversation_log.append(locked, _exchange(locked, "prices", now))
        await uow.commit()
    stored, messages = await _stored(uow_factory, conversation.id)
    assert (stored.message_count, stored.last_message_at, stored.updated_at) == (4, now, now)
    assert [(m.seq, m.role) for m in messages] == [
        (1, MessageRole.USER),
        (2, MessageRole.ASSISTANT),
        (3, MessageRole.USER),
        (4, MessageRole.ASSISTANT),
    ]
    assert messages[0].id == exchange[0].id
    assert messages[1].metadata == {"engine": "knowledge", "confidence": 0.5, "sources": []}


async def test_append_to_a_conversation_added_in_the_same_unit_of_work(
    uow_factory: UnitOfWorkFactory,
) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation = Conversation.start(
        id=uuid.uuid4(), bot_id=bot.id, now=next_time(), user_id=owner.id, title="greeted"
    )
    async with uow_factory() as uow:
        await uow.conversations.add(conversation)
        greeting = conversation.append(
            message_id=uuid.uuid4(), role=MessageRole.ASSISTANT, content="Hi!", now=next_time()
        )
        await uow.conversation_log.append(conversation, [greeting])
        await uow.commit()
    stored, messages = await _stored(uow_factory, conversation.id)
    assert (stored.title, stored.message_count) == ("greeted", 1)
    assert stored.last_message_at == greeting.created_at
    assert [(m.seq, m.content) for m in messages] == [(1, "Hi!")]


async def test_nothing_appended_persists_without_commit(uow_factory: UnitOfWorkFactory) -> None:
    conversation = await _stored_conversation(uow_factory)
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with uow_factory() as uow:
            locked = await uow.conversation_log.lock(conversation.id)
            assert locked is not None
            await uow.conversation_log.append(locked, _exchange(locked, "lost", next_time()))
            raise RuntimeError("changed my mind")
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        await uow.conversation_log.append(locked, _exchange(locked, "also lost", next_time()))
    stored, messages = await _stored(uow_factory, conversation.id)
    assert (stored.message_count, messages) == (0, [])


async def test_a_locked_conversation_is_stored_whole(uow_factory: UnitOfWorkFactory) -> None:
    """By `append`, with what the domain changed on it, or by `commit()` when nothing was
    appended (a rename, a close)."""
    conversation = await _stored_conversation(uow_factory)
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        locked.rename("renamed", next_time())
        await uow.conversation_log.append(locked, _exchange(locked, "hi", next_time()))
        await uow.commit()
    stored, _ = await _stored(uow_factory, conversation.id)
    assert (stored.title, stored.message_count) == ("renamed", 2)
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        locked.close(next_time())
        await uow.commit()
    stored, _ = await _stored(uow_factory, conversation.id)
    assert (stored.title, stored.status, stored.message_count) == (
        "renamed",
        ConversationStatus.CLOSED,
        2,
    )


async def test_a_locked_conversation_can_be_deleted(uow_factory: UnitOfWorkFactory) -> None:
    conversation = await _stored_conversation(uow_factory)
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        await uow.conversation_log.append(locked, _exchange(locked, "bye", next_time()))
        await uow.commit()
    async with uow_factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        await uow.conversations.delete(locked)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.conversations.get(conversation.id) is None
        assert await uow.messages.list_page(conversation.id, after_seq=0, limit=5) == []


async def test_concurrent_appends_get_gap_free_sequence_numbers(
    uow_factory: UnitOfWorkFactory,
) -> None:
    conversation = await _stored_conversation(uow_factory)
    start = next_time()

    async def post(i: int) -> None:
        async with uow_factory() as uow:
            locked = await uow.conversation_log.lock(conversation.id)
            assert locked is not None
            await asyncio.sleep(0)  # let the others run into the lock
            now = start + timedelta(seconds=i)
            await uow.conversation_log.append(locked, _exchange(locked, f"q{i}", now))
            await uow.commit()

    await asyncio.gather(*(post(i) for i in range(12)))
    stored, messages = await _stored(uow_factory, conversation.id)
    assert stored.message_count == 24
    assert [m.seq for m in messages] == list(range(1, 25))
    # Each exchange kept together: a question, then its answer.
    for asked, answered in zip(messages[::2], messages[1::2], strict=True):
        assert answered.content == f"about {asked.content}"


async def test_a_sequence_number_is_never_appended_twice(uow_factory: UnitOfWorkFactory) -> None:
    conversation = await _stored_conversation(uow_factory)
    with pytest.raises(DuplicateKey) as refused:
        async with uow_factory() as uow:
            locked = await uow.conversation_log.lock(conversation.id)
            assert locked is not None
            first = locked.append(
                message_id=uuid.uuid4(), role=MessageRole.USER, content="one", now=next_time()
            )
            again = Message(
                uuid.uuid4(),
                conversation.id,
                first.seq,
                MessageRole.USER,
                "x",
                {},
                first.created_at,
            )
            await uow.conversation_log.append(locked, [first, again])
            await uow.commit()
    assert refused.value.resource == "messages"
    stored, messages = await _stored(uow_factory, conversation.id)
    assert (stored.message_count, messages) == (0, [])


async def test_a_read_only_unit_of_work_neither_locks_nor_appends(
    uow_factory: UnitOfWorkFactory,
) -> None:
    conversation = await _stored_conversation(uow_factory)
    async with uow_factory(read_only=True) as uow:
        with pytest.raises(RuntimeError):
            await uow.conversation_log.lock(conversation.id)
        with pytest.raises(RuntimeError):
            await uow.conversation_log.append(conversation, [])
