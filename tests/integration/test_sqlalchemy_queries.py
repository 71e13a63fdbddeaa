"""The few non-public SQLAlchemy APIs the adapter relies on, each pinned here, and the error
table's entries that the contract suite cannot provoke on demand."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect
from sqlalchemy.orm.exc import StaleDataError

from adapters.sqlalchemy.database import without_transactions
from adapters.sqlalchemy.errors import POSTGRESQL, translate
from adapters.sqlalchemy.queries.compiled import CompiledStatement, positional_parameters
from adapters.sqlalchemy.queries.drivers import start_asyncpg_transaction
from adapters.sqlalchemy.store import in_greenlet
from application.errors import ConcurrentUpdate, DuplicateKey, IntegrityViolation, StoreBusy
from tests.conftest import clean_engine

pytestmark = pytest.mark.integration

_table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer()), sa.Column("b", sa.Integer()))


@pytest.mark.parametrize("dialect", [asyncpg_dialect(), aiosqlite_dialect()])
def test_positional_parameters_come_in_the_order_the_driver_takes_them(
    dialect: sa.engine.Dialect,
) -> None:
    statement = (
        sa.select(_table)
        .where(_table.c.b == sa.bindparam("second"), _table.c.a == sa.bindparam("first"))
        .limit(sa.bindparam("limit"))
    )
    compiled = statement.compile(dialect=dialect)
    names = [name for name, _ in positional_parameters(compiled)]  # type: ignore[arg-type]
    assert names[:3] == ["second", "first", "limit"]
    args = CompiledStatement(statement, dialect).args({"first": 1, "second": 2, "limit": 3})
    # SQLite adds "OFFSET ?" with its literal value.
    assert args == ([2, 1, 3, 0] if dialect.name == "sqlite" else [2, 1, 3])


def test_entities_built_from_rows_are_readable_and_changeable_before_any_orm_query() -> None:
    script = (
        "from adapters.sqlalchemy.mappers import start_mappers\n"
        "from adapters.sqlalchemy.queries.compiled import instance_factory\n"
        "from domain.users import User\n"
        "start_mappers()\n"
        "user = instance_factory(User)()\n"
        "vars(user)['email'] = 'a@example.com'\n"
        "user.email = user.email.upper()\n"
        "print(user.email)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "A@EXAMPLE.COM", result.stderr


async def test_a_raw_connection_returned_inside_a_transaction_is_rolled_back(
    sqlite_url: str,
) -> None:
    """`in_greenlet(raw.close)` returns a raw pooled connection through the pool's reset: its
    open transaction (and SQLite's write lock) ends."""
    engine = await clean_engine(sqlite_url)
    raw = await without_transactions(engine).raw_connection()
    await raw.driver_connection.execute_fetchall("BEGIN IMMEDIATE")
    await raw.driver_connection.execute_fetchall("DELETE FROM users")
    assert raw.driver_connection.in_transaction
    driver = raw.driver_connection
    await in_greenlet(raw.close)
    assert not driver.in_transaction
    broken = await engine.raw_connection()
    await in_greenlet(broken.invalidate)
    assert broken.driver_connection is None


def test_the_error_table() -> None:
    assert isinstance(translate(StaleDataError("0 rows")), ConcurrentUpdate)
    assert isinstance(translate(sa_exc.TimeoutError("pool")), StoreBusy)
    assert translate(RuntimeError("a bug")) is None
    for sqlstate, meaning in POSTGRESQL.items():
        error = type("DriverError", (Exception,), {"sqlstate": sqlstate})()
        assert type(translate(error)) is meaning
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    connection.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
        "REFERENCES parent (id), n INTEGER CHECK (n > 0))"
    )
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("INSERT INTO parent VALUES (1)")
    refusals = {
        "INSERT INTO parent VALUES (1)": DuplicateKey,
        "INSERT INTO child VALUES (1, 2, 1)": IntegrityViolation,
        "INSERT INTO child VALUES (1, NULL, 1)": IntegrityViolation,
        "INSERT INTO child VALUES (1, 1, 0)": IntegrityViolation,
    }
    for statement, meaning in refusals.items():
        with pytest.raises(sqlite3.IntegrityError) as refused:
            connection.execute(statement)
        translated = translate(refused.value)
        assert type(translated) is meaning, statement
        if isinstance(translated, DuplicateKey):
            assert translated.resource == "parent"
    connection.close()


@pytest.mark.postgres
async def test_the_asyncpg_adapter_begins_its_transaction_when_asked(postgresql_url: str) -> None:
    engine = await clean_engine(postgresql_url)
    async with engine.connect() as connection:
        await connection.begin()
        pooled = await connection.get_raw_connection()
        driver: Any = pooled.driver_connection
        assert not driver.is_in_transaction()  # SQLAlchemy's adapter begins it lazily
        await start_asyncpg_transaction(pooled.dbapi_connection)
        assert driver.is_in_transaction()
        await start_asyncpg_transaction(pooled.dbapi_connection)  # once
        await connection.exec_driver_sql("SELECT 1")  # SQLAlchemy's statements run inside it
        await connection.commit()  # and SQLAlchemy ends it
        assert not driver.is_in_transaction()


async def test_a_sqlite_transaction_takes_the_write_lock_when_sqlalchemy_begins_it(
    sqlite_url: str,
) -> None:
    """database.begin_immediate, from SQLAlchemy's "begin" event."""
    engine = await clean_engine(sqlite_url)
    other = sqlite3.connect(engine.url.database or "", timeout=0, isolation_level=None)
    try:
        async with engine.connect() as connection:
            await connection.begin()
            driver: Any = (await connection.get_raw_connection()).driver_connection
            assert driver.in_transaction
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # another process: the lock is taken
            await connection.rollback()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
