"""How the SQLAlchemy unit of work reads: named reads on the driver's connection, one pooled
connection per read-only unit of work, no session unless a read needs the ORM."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.queries.drivers import driver_for
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWork, SqlAlchemyUnitOfWorkFactory
from application.errors import StoreBusy
from application.ports import BotFilter
from tests.conftest import clean_engine
from tests.databases import terminate_backend
from tests.factories import stored_owner_and_bot

pytestmark = pytest.mark.integration


def _checked_out(engine: AsyncEngine) -> int:
    return engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]


def _reading(uow: object) -> Any:
    assert isinstance(uow, SqlAlchemyUnitOfWork)
    assert uow._reading is not None
    return uow._reading


async def test_hot_reads_open_no_session_and_hold_one_connection(sql_engine: AsyncEngine) -> None:
    factory = SqlAlchemyUnitOfWorkFactory(sql_engine)
    owner, bot = await stored_owner_and_bot(factory)
    before = _checked_out(sql_engine)
    async with factory(read_only=True) as uow:
        assert await uow.users.get(owner.id) is not None
        assert await uow.bots.get(bot.id) is not None
        assert _reading(uow)._session is None  # the ORM was never needed
        assert _checked_out(sql_engine) == before + 1
        # A read without a compiled form opens a session, whose connection takes over: the
        # raw one goes back to the pool, and later named reads use the session's.
        page = await uow.bots.list_page(BotFilter(owner_id=owner.id), after=None, limit=5)
        assert [b.id for b in page] == [bot.id]
        assert _reading(uow)._session is not None
        assert await uow.users.get(owner.id) is not None
        assert _checked_out(sql_engine) == before + 1
    assert _checked_out(sql_engine) == before


async def test_a_busy_pool_never_starves_units_of_work_that_need_a_session(
    database_url: str,
) -> None:
    """Each holds at most one connection: with a pool of one, every unit of work that makes a
    named read and then a session read still gets through."""
    engine = create_engine(database_url, pool_size=1)
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        owner, bot = await stored_owner_and_bot(factory)

        async def hot_then_session() -> int:
            async with factory(read_only=True) as uow:
                assert await uow.bots.get(bot.id) is not None
                page = await uow.bots.list_page(BotFilter(owner_id=owner.id), after=None, limit=5)
                return len(page)

        async with asyncio.timeout(10):
            assert await asyncio.gather(*(hot_then_session() for _ in range(4))) == [1] * 4
    finally:
        await engine.dispose()


async def test_no_connection_free_in_time_is_a_busy_store(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, pool_timeout_seconds=0.1)
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        owner, _ = await stored_owner_and_bot(factory)
        async with factory(read_only=True) as holder:
            assert await holder.users.get(owner.id) is not None
            with pytest.raises(StoreBusy):
                async with factory(read_only=True) as waiter:
                    await waiter.users.get(owner.id)
    finally:
        await engine.dispose()


def test_drivers_we_do_not_ship_are_refused() -> None:
    with pytest.raises(ValueError, match="asyncpg"):
        driver_for(SimpleNamespace(name="postgresql", driver="psycopg"))  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_a_connection_that_broke_under_a_driver_read_is_not_reused(
    postgresql_url: str,
) -> None:
    admin_engine = await clean_engine(postgresql_url)
    engine = create_engine(postgresql_url, pool_size=1)  # so the next read gets the same one
    try:
        factory = SqlAlchemyUnitOfWorkFactory(engine)
        owner, _ = await stored_owner_and_bot(factory)
        async with factory(read_only=True) as uow:
            assert await uow.users.get(owner.id) is not None
            driver = await _reading(uow).driver_connection()
            await terminate_backend(driver.get_server_pid(), admin_engine)
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            async with factory(read_only=True) as uow:
                await uow.users.get(owner.id)
        async with factory(read_only=True) as uow:
            assert await uow.users.get(owner.id) is not None
    finally:
        await engine.dispose()
