"""What a refusal of the store means, the same on every adapter (adapters/sqlalchemy/errors.py
has the SQL side's one table)."""

from __future__ import annotations

import uuid

import pytest

from application.errors import DuplicateKey, IntegrityViolation, StoreBusy
from application.ports import UnitOfWorkFactory
from domain.conversations import MessageRole
from tests.factories import ConversationFactory, UserFactory, next_time, stored_owner_and_bot

pytestmark = pytest.mark.contract


async def test_a_duplicate_email_names_its_table(uow_factory: UnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        await uow.users.add(UserFactory(email="twice@example.com"))
        await uow.commit()
    with pytest.raises(DuplicateKey) as refused:
        async with uow_factory() as uow:
            await uow.users.add(UserFactory(email="twice@example.com"))
            await uow.commit()
    assert refused.value.resource == "users"


async def test_a_message_for_a_missing_conversation_is_an_integrity_violation(
    uow_factory: UnitOfWorkFactory,
) -> None:
    orphan = ConversationFactory.build().append(
        message_id=uuid.uuid4(), role=MessageRole.USER, content="hello?", now=next_time()
    )
    with pytest.raises(IntegrityViolation):
        async with uow_factory() as uow:
            await uow.messages.add(orphan)
            await uow.commit()


async def test_a_conversation_for_a_missing_bot_is_an_integrity_violation(
    uow_factory: UnitOfWorkFactory,
) -> None:
    owner, _ = await stored_owner_and_bot(uow_factory)
    with pytest.raises(IntegrityViolation):
        async with uow_factory() as uow:
            await uow.conversations.add(ConversationFactory(bot_id=uuid.uuid4(), user_id=owner.id))
            await uow.commit()


async def test_a_writer_that_cannot_get_the_lock_in_time_hears_the_store_is_busy(
    uow_factory: UnitOfWorkFactory, impatient_uow_factory: UnitOfWorkFactory
) -> None:
    """On PostgreSQL the row lock waits past `lock_timeout`; on SQLite the write lock past the
    busy timeout; in memory the store's lock past the unit of work's timeout."""
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation = ConversationFactory(bot_id=bot.id, user_id=owner.id)
    async with uow_factory() as uow:
        await uow.conversations.add(conversation)
        await uow.commit()
    async with uow_factory() as holder:
        assert await holder.conversation_log.lock(conversation.id) is not None
        with pytest.raises(StoreBusy):
            async with impatient_uow_factory() as waiter:
                await waiter.conversation_log.lock(conversation.id)
    async with impatient_uow_factory() as uow:  # free again
        assert await uow.conversation_log.lock(conversation.id) is not None
