"""How the SQLAlchemy unit of work writes: one session and one transaction, the hot write through
the conversation log on the session's connection, and the failure cases. (The contract tests
check the outcomes on every adapter; these check how they come about.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from adapters.sqlalchemy.database import create_engine, without_transactions
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWork, SqlAlchemyUnitOfWorkFactory
from application.errors import ConcurrentUpdate, DuplicateKey, StoreBusy
from application.ports import IdempotencyRecord, UnitOfWork
from domain.bots import Bot
from domain.conversations import Conversation, MessageRole
from domain.users import User
from tests.conftest import clean_engine
from tests.databases import terminate_backend
from tests.factories import BotFactory, UserFactory, next_time, stored_owner_and_bot

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
        conversation = await uow.conversation_log.lock(conversation_id)
        assert conversation is not None
        message = conversation.append(
            message_id=uuid.uuid4(),
            role=MessageRole.USER,
            content=text,
            now=conversation.last_message_at + timedelta(seconds=1),
        )
        await uow.conversation_log.append(conversation, [message])
        await uow.commit()


async def _session(uow: UnitOfWork) -> AsyncSession:
    assert isinstance(uow, SqlAlchemyUnitOfWork)
    assert uow._writing is not None
    return await uow._writing.session()


async def _backend_pid(uow: UnitOfWork) -> int:
    assert isinstance(uow, SqlAlchemyUnitOfWork)
    assert uow._writing is not None
    raw = await (await uow._writing.connection()).get_raw_connection()
    driver: Any = raw.driver_connection
    return int(driver.get_server_pid())


async def test_a_post_leaves_the_session_nothing_to_flush(sql_engine: AsyncEngine) -> None:
    """The conversation the log locks is not the session's: it holds the bot alone (read with
    the named read, tracked for its version check), and commit flushes nothing."""
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    conversation = await _stored_conversation(factory)
    async with factory() as uow:
        locked = await uow.conversation_log.lock(conversation.id)
        assert locked is not None
        bot = await uow.bots.get(locked.bot_id)
        assert bot is not None
        assert await uow.bots.get(locked.bot_id) is bot  # one object per row in the session
        message = locked.append(
            message_id=uuid.uuid4(), role=MessageRole.USER, content="hi", now=locked.created_at
        )
        await uow.conversation_log.append(locked, [message])
        session = await _session(uow)
        assert locked not in session
        assert bot in session
        assert not session.new
        assert not session.dirty
        await uow.commit()
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert stored.message_count == 1
    assert [(m.seq, m.content, m.role) for m in page] == [(1, "hi", MessageRole.USER)]


async def test_a_bot_changed_in_a_writing_unit_of_work_is_version_checked(
    sql_engine: AsyncEngine,
) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    _, bot = await stored_owner_and_bot(factory)
    async with factory() as uow:
        loaded = await uow.bots.get(bot.id)
        assert loaded is not None
        loaded.configure({"name": "renamed"}, next_time())
        await uow.commit()
    async with factory(read_only=True) as uow:
        stored = await uow.bots.get(bot.id)
    assert stored is not None
    assert (stored.name, stored.version) == ("renamed", 2)


@pytest.mark.postgres
async def test_a_stale_version_is_a_concurrent_update(postgresql_url: str) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(await clean_engine(postgresql_url))
    _, bot = await stored_owner_and_bot(factory)
    async with factory() as first, factory() as second:
        mine, theirs = await first.bots.get(bot.id), await second.bots.get(bot.id)
        assert mine is not None
        assert theirs is not None
        theirs.configure({"name": "theirs"}, next_time())
        await second.commit()
        mine.configure({"name": "mine"}, next_time())
        with pytest.raises(ConcurrentUpdate):
            await first.commit()


async def test_new_orm_rows_and_an_appended_conversation_are_inserted_parents_first(
    sql_engine: AsyncEngine,
) -> None:
    """A user and a bot (pending in the session), and a conversation with its greeting appended
    through the log, in one transaction: appending flushes the pending parents first."""
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    owner = UserFactory()
    bot = BotFactory(owner_id=owner.id)
    conversation = _conversation(bot, owner)
    async with factory() as uow:
        await uow.conversations.add(conversation)
        await uow.users.add(owner)
        await uow.bots.add(bot)
        greeting = conversation.append(
            message_id=uuid.uuid4(),
            role=MessageRole.ASSISTANT,
            content="Hello",
            now=conversation.created_at,
        )
        await uow.conversation_log.append(conversation, [greeting])
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
            locked = await uow.conversation_log.lock(conversation.id)
            assert locked is not None
            locked.rename("renamed", locked.created_at)
            await uow.conversation_log.append(locked, [])
            twice = [
                locked.append(
                    message_id=conversation.id,  # the second takes the first one's id
                    role=MessageRole.USER,
                    content="twice",
                    now=locked.created_at,
                )
                for _ in range(2)
            ]
            await uow.conversation_log.append(locked, twice)
    async with factory(read_only=True) as uow:
        stored = await uow.conversations.get(conversation.id)
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
    assert stored is not None
    assert (stored.title, stored.message_count) == (conversation.title, 0)
    assert page == []
    await _post(factory, conversation.id, "still usable")


@pytest.mark.postgres
async def test_an_update_of_an_unlocked_read_sets_only_the_changed_columns(
    postgresql_url: str,
) -> None:
    """A rename through `conversations.get` (the ORM's) while a post appends: both stay."""
    factory = SqlAlchemyUnitOfWorkFactory(await clean_engine(postgresql_url))
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
        conversation = await _stored_conversation(factory)
        async with factory() as uow:
            assert await uow.conversation_log.lock(conversation.id) is not None
            backend_pid = await _backend_pid(uow)
        await terminate_backend(backend_pid, admin_engine)
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            await _post(factory, conversation.id, "lost with the connection")
        await _post(factory, conversation.id, "on a new connection")
        async with factory(read_only=True) as uow:
            page = await uow.messages.list_page(conversation.id, after_seq=0, limit=5)
        assert [m.content for m in page] == ["on a new connection"]
    finally:
        await engine.dispose()


async def test_sqlite_writers_of_one_process_queue_and_never_stay_blocked(
    sqlite_url: str,
) -> None:
    engine = await clean_engine(sqlite_url)
    factory = SqlAlchemyUnitOfWorkFactory(engine, writer_wait_seconds=0.5)
    conversation = await _stored_conversation(factory)
    with pytest.raises(RuntimeError):  # a unit of work that fails lets the next one in
        async with factory() as uow:
            raise RuntimeError
    await asyncio.gather(*(_post(factory, conversation.id, f"m{i}") for i in range(10)))
    async with factory(read_only=True) as uow:
        page = await uow.messages.list_page(conversation.id, after_seq=0, limit=20)
    assert sorted(m.content for m in page) == [f"m{i}" for i in range(10)]
    assert [m.seq for m in page] == list(range(1, 11))

    async with factory():  # holds this process's turn to write, for longer than 0.5 s
        with pytest.raises(StoreBusy):
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
            await uow.conversation_log.lock(bot.id)
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
            locked = await uow.conversation_log.lock(conversation.id)
            assert locked is not None
            assert locked.user_id is not None
            await uow.users.get(locked.user_id)  # the session holds something too
            monkeypatch.setattr(AsyncSession, "close", broken_close)
    monkeypatch.undo()
    async with asyncio.timeout(5):
        await _post(factory, conversation.id, "the lock is free")


@pytest.mark.postgres
async def test_a_lock_the_server_refuses_leaves_the_connection_in_the_pool(
    postgresql_url: str,
) -> None:
    """The server answered (lock_timeout): the transaction failed, the connection did not."""
    await clean_engine(postgresql_url)
    engine = create_engine(postgresql_url, pool_size=2, lock_timeout_seconds=0.05)
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        conversation = await _stored_conversation(factory)
        async with factory() as holder:
            assert await holder.conversation_log.lock(conversation.id) is not None
            with pytest.raises(StoreBusy):
                async with factory() as waiter:
                    await waiter.bots.get(conversation.bot_id)  # the transaction begins
                    waiter_pid = await _backend_pid(waiter)
                    await waiter.conversation_log.lock(conversation.id)  # on the driver
        async with factory() as first, factory() as second:
            await first.bots.get(conversation.bot_id)
            await second.bots.get(conversation.bot_id)
            assert waiter_pid in {await _backend_pid(first), await _backend_pid(second)}
    finally:
        await engine.dispose()
