"""Where a unit of work runs its compiled statements: the driver's connection under the one it
holds, outside any transaction (read-only units) or inside its session's (writing units).

A failure SQLAlchemy did not see is handled here: unless the database answered it, the
connection is invalidated, so that its pool never hands a broken one out again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.queries.compiled import CompiledStatement, Row
from adapters.sqlalchemy.queries.drivers import Driver


class Statements(Protocol):
    async def rows(self, statement: CompiledStatement, values: Mapping[str, Any]) -> Sequence[Row]:
        """The rows of a SELECT (or of a statement with RETURNING)."""
        ...

    async def run(self, statement: CompiledStatement, values: Mapping[str, Any]) -> None: ...


class ReadConnection(Protocol):
    """The connection a read-only unit of work holds now (store.py)."""

    async def driver_connection(self) -> Any: ...
    async def invalidate(self) -> None: ...


class AutocommitStatements:
    """Statements of a read-only unit of work: each one on its own, in the driver's autocommit
    mode (no BEGIN/COMMIT round trips, no write lock on SQLite)."""

    def __init__(self, driver: Driver, connection: ReadConnection) -> None:
        self._driver = driver
        self._connection = connection

    async def rows(self, statement: CompiledStatement, values: Mapping[str, Any]) -> Sequence[Row]:
        connection = await self._connection.driver_connection()
        try:
            return await self._driver.fetch(connection, statement.sql, statement.args(values))
        except BaseException as error:
            if not self._driver.answered(error, connection):
                await self._connection.invalidate()
            raise

    async def run(self, statement: CompiledStatement, values: Mapping[str, Any]) -> None:
        await self.rows(statement, values)


class TransactionStatements:
    """Statements of a writing unit of work, on its session's connection and inside the
    transaction SQLAlchemy began there (`Driver.begin` made sure the driver's has begun)."""

    def __init__(
        self, driver: Driver, connection: Callable[[], Awaitable[AsyncConnection]]
    ) -> None:
        self._driver = driver
        self._connection = connection
        self._held: AsyncConnection | None = None
        self._driver_connection: Any = None

    async def _driver_of(self, connection: AsyncConnection) -> Any:
        if connection is not self._held:
            self._driver_connection = (await connection.get_raw_connection()).driver_connection
            self._held = connection
        return self._driver_connection

    async def rows(self, statement: CompiledStatement, values: Mapping[str, Any]) -> Sequence[Row]:
        return await self._call(statement, values, fetch=True)

    async def run(self, statement: CompiledStatement, values: Mapping[str, Any]) -> None:
        await self._call(statement, values, fetch=False)

    async def _call(
        self, statement: CompiledStatement, values: Mapping[str, Any], *, fetch: bool
    ) -> Sequence[Row]:
        connection = await self._connection()
        driver_connection = await self._driver_of(connection)
        if not self._driver.in_transaction(driver_connection):
            raise RuntimeError(
                "a writing unit of work's statement would run outside its transaction"
            )
        args = statement.args(values)
        try:
            if fetch:
                return await self._driver.fetch(driver_connection, statement.sql, args)
            await self._driver.execute(driver_connection, statement.sql, args)
            return ()
        except BaseException as error:
            if not self._driver.answered(error, driver_connection):
                self._held = None
                await connection.invalidate()
            raise
