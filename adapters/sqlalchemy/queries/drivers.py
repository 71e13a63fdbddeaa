"""The two database drivers we ship, as the compiled statements use them.

Each call is one round trip (asyncpg) or one hop to the connection's thread (aiosqlite:
`execute_fetchall` executes, fetches and closes its cursor in one hop where a cursor would take
three). Any other driver is refused when the unit-of-work factory is built.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.pool import PoolProxiedConnection

from adapters.sqlalchemy.queries.compiled import Row


class Driver(Protocol):
    def answered(self, error: BaseException, connection: Any) -> bool:
        """Whether the database answered with `error` and the connection is still usable (only
        the statement, or its transaction, failed). Otherwise the connection may be broken (a
        restarted server, a statement cut short by cancellation) and must not be reused."""
        ...

    def in_transaction(self, connection: Any) -> bool: ...
    async def begin(self, pooled: PoolProxiedConnection) -> None:
        """Right after SQLAlchemy began a transaction on `pooled`: makes sure the driver's
        transaction has begun too, so that statements run on the driver are inside it."""
        ...

    async def fetch(self, connection: Any, sql: str, args: Sequence[Any]) -> Sequence[Row]: ...
    async def execute(self, connection: Any, sql: str, args: Sequence[Any]) -> None: ...


class Asyncpg:
    def __init__(self) -> None:
        import asyncpg  # here, so that a SQLite worker never loads it

        self._answered_errors = (asyncpg.PostgresError,)

    def answered(self, error: BaseException, connection: Any) -> bool:
        # An error can be the server's last word ("terminating connection", 57P01).
        return isinstance(error, self._answered_errors) and not connection.is_closed()

    def in_transaction(self, connection: Any) -> bool:
        return bool(connection.is_in_transaction())

    async def begin(self, pooled: PoolProxiedConnection) -> None:
        await start_asyncpg_transaction(pooled.dbapi_connection)

    async def fetch(self, connection: Any, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        rows: Sequence[Row] = await connection.fetch(sql, *args)
        return rows

    async def execute(self, connection: Any, sql: str, args: Sequence[Any]) -> None:
        await connection.execute(sql, *args)


class Aiosqlite:
    def answered(self, error: BaseException, connection: Any) -> bool:
        return isinstance(error, sqlite3.Error)

    def in_transaction(self, connection: Any) -> bool:
        return bool(connection.in_transaction)

    async def begin(self, pooled: PoolProxiedConnection) -> None:
        return None  # SQLAlchemy's begin sent BEGIN IMMEDIATE (database.py)

    async def fetch(self, connection: Any, sql: str, args: Sequence[Any]) -> Sequence[Row]:
        rows: Sequence[Row] = await connection.execute_fetchall(sql, args)
        return rows

    async def execute(self, connection: Any, sql: str, args: Sequence[Any]) -> None:
        await connection.execute_fetchall(sql, args)


async def start_asyncpg_transaction(adapted: Any) -> None:
    """Has SQLAlchemy's asyncpg adapter begin its transaction now. The adapter begins it
    lazily, with the first statement SQLAlchemy runs, and a statement run on the driver before
    that would run outside it; sending that first statement through SQLAlchemy instead cost a
    measurable share of a post (bench/RESULTS.md). The adapter still owns the transaction:
    SQLAlchemy commits or rolls it back. Not public API (the `_transaction` and
    `_start_transaction` of `AsyncAdapt_asyncpg_connection`): pinned by
    tests/integration/test_sqlalchemy_queries.py."""
    if adapted._transaction is None:
        await adapted._start_transaction()


def driver_for(dialect: Dialect) -> Driver:
    if dialect.driver == "asyncpg":
        return Asyncpg()
    if dialect.driver == "aiosqlite":
        return Aiosqlite()
    raise ValueError(
        f"the SQL adapter runs on asyncpg (PostgreSQL) and aiosqlite (SQLite), not on "
        f"{dialect.name}+{dialect.driver}"
    )
