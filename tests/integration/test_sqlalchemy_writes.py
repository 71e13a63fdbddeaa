"""How the SQLAlchemy unit of work writes: one transaction run by the driver, conversations and
messages through compiled statements, everything else through an ORM session inside it, and the
ORM alone for other drivers. (The contract tests check the outcomes on every adapter; these check
how they come about, and the failure cases.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from adapters.sqlalchemy import driver_writes
from adapters.sqlalchemy.database import create_engine, without_transactions
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWork, SqlAlchemyUnitOfWorkFactory
from application.errors import ConcurrentUpdate, DuplicateKey
from application.ports import IdempotencyRecord, UnitOfWork
from domain.bots import Bot
from domain.conversations import Conversation, MessageRole
from domain.users import User
from tests.conftest import clean_engine
from tests.databases import terminate_backend
from tests.factories import BotFactory, UserFactory, stored_owner_and_bot

pytestmark = pytest.mark.integration


def _conversation(bot: Bot, owner: User) -> Conversation:
    return Conversation.start(id=uuid.uuid4(), bot_id=bot.id, now=bot.created_at, user_id=owner.id)


async def _stored_conversation(factory: SqlAlchemyUnitOfWorkFactory) -> Conversation:
    owner, bot = await stored_owner_and_bot(factory)
    conversation = _conversation(bot, owner)
    async with factory() as uow:
        await uow.conversations.add(conversation)
        await uow.commit()
    return conversation


async def _post(
    factory: SqlAlchemyUnitOfWorkFactory, conversation_id: uuid.UUID, text: str
) -> None:
    async with factory() as uow:
        conversation = await uow.conversations.get_for_update(conversation_id)
        assert conversation is not None
        message = conversation.append(
            message_id=uuid.uuid4(),
            role=MessageRole.USER,
            content=text,
            now=conversation.last_message_at + timedelta(seconds=1),
        )
        await uow.messages.add(message)
        await uow.commit()


async def test_a_post_needs_no_orm_session(sql_engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    async with factory() as uow:
        assert isinstance(uow, SqlAlchemyUnitOfWork)
        locked = await uow.conversations.get_for_update(conversation.id)
        assert locked is not None
        assert await uow.conversations.get(conversation.id) is locked  # one object per row
        bot_id = conversation.bot_id
        assert await uow.bots.get(bot_id) is await uow.bots.get(bot_id)
        message = locked.append(
            message_id=uuid.uuid4(), role=MessageRole.USER, content="hi", now=locked.created_at
        )
        await uow.messages.add(message)
        await uow.commit()
        assert uow._session is None
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert stored.message_count == 1
    assert [(m.seq, m.content, m.role) for m in page] == [(1, "hi", MessageRole.USER)]


async def test_nothing_is_written_without_commit(sql_engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    await _post(factory, conversation.id, "kept")
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with factory() as uow:
            locked = await uow.conversations.get_for_update(conversation.id)
            assert locked is not None
            locked.rename("renamed", locked.created_at)
            await uow.messages.add(
                locked.append(
                    message_id=uuid.uuid4(),
                    role=MessageRole.USER,
                    content="lost",
                    now=locked.created_at,
                )
            )
            raise RuntimeError("changed my mind")
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert (stored.title, stored.message_count) == (conversation.title, 1)
    assert [m.content for m in page] == ["kept"]


async def test_new_orm_rows_and_new_conversations_are_inserted_parents_first(
    sql_engine: AsyncEngine,
) -> None:
    """A bot (ORM) and its conversation and greeting (driver) in one transaction."""
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    owner = UserFactory()
    bot = BotFactory(owner_id=owner.id)
    conversation = _conversation(bot, owner)
    async with factory() as uow:
        await uow.conversations.add(conversation)
        await uow.messages.add(
            conversation.append(
                message_id=uuid.uuid4(),
                role=MessageRole.ASSISTANT,
                content="Hello",
                now=conversation.created_at,
            )
        )
        await uow.users.add(owner)
        await uow.bots.add(bot)
        await uow.idempotency.add(
            IdempotencyRecord("user:x", "key", "fingerprint", None, conversation.created_at)
        )
        await uow.commit()
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert stored.message_count == 1
    assert [m.content for m in page] == ["Hello"]


async def test_a_broken_unique_rule_rolls_the_whole_transaction_back(
    sql_engine: AsyncEngine,
) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    with pytest.raises(DuplicateKey):
        async with factory() as uow:
            locked = await uow.conversations.get_for_update(conversation.id)
            assert locked is not None
            for _ in range(2):  # the second message takes the first one's id
                message = locked.append(
                    message_id=conversation.id,
                    role=MessageRole.USER,
                    content="twice",
                    now=locked.created_at,
                )
                await uow.messages.add(message)
            await uow.commit()
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert stored.message_count == 0
    assert page == []
    await _post(factory, conversation.id, "still usable")


async def test_deleting_a_conversation_deletes_its_messages(sql_engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    await _post(factory, conversation.id, "bye")
    async with factory() as uow:
        locked = await uow.conversations.get_for_update(conversation.id)
        assert locked is not None
        await uow.conversations.delete(locked)
        await uow.commit()
    async with factory(read_only=True) as uow:
        assert await uow.conversations.get(conversation.id) is None
        assert await uow.messages.list_page(conversation.id, after_seq=0, limit=5) == []


@pytest.mark.postgres
async def test_an_update_sets_only_the_changed_columns(postgresql_url: str) -> None:
    """Two transactions change different columns of one conversation: both changes stay."""
    engine = await clean_engine(postgresql_url)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    conversation = await _stored_conversation(factory)
    async with factory() as first:
        loaded = await first.conversations.get(conversation.id)  # no lock
        assert loaded is not None
        await _post(factory, conversation.id, "meanwhile")  # message_count and times change
        loaded.rename("new title", loaded.created_at)
        await first.commit()
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
    assert stored is not None
    assert (stored.title, stored.message_count) == ("new title", 1)


@pytest.mark.postgres
async def test_a_connection_that_broke_under_a_driver_write_is_not_reused(
    postgresql_url: str,
) -> None:
    admin_engine = await clean_engine(postgresql_url)
    engine = create_engine(postgresql_url, pool_size=1)  # so the next unit gets the same one
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        owner, bot = await stored_owner_and_bot(factory)
        conversation = _conversation(bot, owner)
        async with factory() as uow:
            await uow.conversations.add(conversation)
            assert isinstance(uow, SqlAlchemyUnitOfWork)
            assert uow._connection is not None
            await uow.commit()
            raw = await uow._connection.get_raw_connection()
            backend_pid = raw.driver_connection.get_server_pid()
        await terminate_backend(backend_pid, admin_engine)
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            await _post(factory, conversation.id, "lost with the connection")
        await _post(factory, conversation.id, "on a new connection")
        async with factory(read_only=True) as uow:
            page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
        assert [m.content for m in page] == ["on a new connection"]
    finally:
        await engine.dispose()


async def test_drivers_without_a_fast_path_write_through_the_orm(
    sql_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_writes, "DRIVER_OPS", {})
    monkeypatch.setattr("adapters.sqlalchemy.unit_of_work.DRIVER_OPS", {})
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    await _post(factory, conversation.id, "through the ORM")
    async with factory() as uow:
        assert isinstance(uow, SqlAlchemyUnitOfWork)
        assert uow._transaction is None
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert stored.message_count == 1
    assert [m.content for m in page] == ["through the ORM"]


async def test_sqlite_writers_of_one_process_queue_and_never_stay_blocked(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await clean_engine(sqlite_url)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    conversation = await _stored_conversation(factory)
    with pytest.raises(RuntimeError):  # a unit of work that fails lets the next one in
        async with factory() as uow:
            raise RuntimeError
    await asyncio.gather(*(_post(factory, conversation.id, f"m{i}") for i in range(10)))
    async with factory(read_only=True) as uow:
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=20)
    assert sorted(m.content for m in page) == [f"m{i}" for i in range(10)]
    assert [m.seq for m in page] == list(range(1, 11))

    monkeypatch.setattr(driver_writes, "WRITER_WAIT_SECONDS", 0.05)
    async with factory():  # holds the write lock
        with pytest.raises(ConcurrentUpdate, match="busy"):
            await _post(factory, conversation.id, "too late")
    await _post(factory, conversation.id, "in time")


async def test_a_sqlite_connection_returned_inside_a_transaction_is_rolled_back(
    sqlite_url: str,
) -> None:
    """SQLite connections go back to the pool without a reset round trip, unless a transaction
    is open: then it is rolled back, and its write lock released."""
    engine = await clean_engine(sqlite_url)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    _, bot = await stored_owner_and_bot(factory)
    async with without_transactions(engine).connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        await driver.execute_fetchall("BEGIN IMMEDIATE")
        await driver.execute_fetchall("UPDATE bots SET name = 'lost'")
        assert driver.in_transaction
    async with factory() as uow:  # would wait for the write lock, then fail
        loaded = await uow.bots.get(bot.id)
        assert loaded is not None
        assert loaded.name == bot.name
        await uow.commit()


async def test_after_commit_the_unit_of_work_runs_no_statement(sql_engine: AsyncEngine) -> None:
    """Its transaction has ended: a statement now would run outside any transaction."""
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    owner, bot = await stored_owner_and_bot(factory)
    async with factory() as uow:
        await uow.conversations.add(_conversation(bot, owner))
        await uow.commit()
        with pytest.raises(RuntimeError, match="ended"):
            await uow.conversations.get_for_update(bot.id)
        with pytest.raises(RuntimeError, match="ended"):
            await uow.users.get(owner.id)


async def test_a_failure_while_closing_still_ends_the_transaction(
    sql_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise its row lock (PostgreSQL) or the write lock (SQLite) would outlive it."""
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)

    async def broken_close(_session: AsyncSession) -> None:
        raise RuntimeError("close failed")

    with pytest.raises(RuntimeError, match="close failed"):
        async with factory() as uow:
            locked = await uow.conversations.get_for_update(conversation.id)
            assert locked is not None
            assert locked.user_id is not None
            await uow.users.get(locked.user_id)  # opens the ORM session
            monkeypatch.setattr(AsyncSession, "close", broken_close)
    monkeypatch.undo()
    async with asyncio.timeout(5):
        await _post(factory, conversation.id, "the lock is free")


@pytest.mark.postgres
async def test_a_lock_the_server_refuses_leaves_the_connection_in_the_pool(
    postgresql_url: str,
) -> None:
    """The server answered: the transaction failed, the connection did not."""
    await clean_engine(postgresql_url)
    engine = create_engine(postgresql_url, pool_size=2)  # the holder's and the waiter's

    async def backend_pid(uow: UnitOfWork) -> int:
        assert isinstance(uow, SqlAlchemyUnitOfWork)
        assert uow._connection is not None
        raw = await uow._connection.get_raw_connection()
        return int(raw.driver_connection.get_server_pid())

    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        conversation = await _stored_conversation(factory)
        async with factory() as holder:
            assert await holder.conversations.get_for_update(conversation.id) is not None
            with pytest.raises(Exception, match="lock"):
                async with factory() as waiter:
                    waiter_pid = await backend_pid(waiter)
                    assert isinstance(waiter, SqlAlchemyUnitOfWork)
                    assert waiter._connection is not None
                    await waiter._connection.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
                    await waiter.conversations.get_for_update(conversation.id)
        async with factory() as first, factory() as second:
            assert waiter_pid in {await backend_pid(first), await backend_pid(second)}
    finally:
        await engine.dispose()
