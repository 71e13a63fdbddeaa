"""The reads every request makes, compiled once and run on the database driver's own connection.

Why: on this machine an ORM `session.get()` costs ~500 µs of CPU, a Core `execute()` ~200 µs and
the same SELECT on the driver's connection ~50 µs. The caller's account, a bot, a conversation
and a page of messages are read on nearly every request, so that difference was most of what
`GET /api/v1/bots/{id}` cost (see bench/). The statements are still SQLAlchemy Core compiled by
the engine's dialect, and every value still goes through its column type's result processor, so
rows come back exactly as the ORM returns them.

Read-only units of work use this on a `RawConnection` (a pooled connection in the driver's
autocommit mode, without SQLAlchemy's `Connection` around it), and writing ones inside their
driver transaction (driver_writes.py). Drivers other than asyncpg and aiosqlite take the plain
Core path on an autocommit `AsyncConnection`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import instrumentation
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

from adapters.sqlalchemy import tables
from domain.bots import Bot
from domain.conversations import Conversation, Message
from domain.users import User

Entity = TypeVar("Entity")
Row = Sequence[Any]
RowFetcher = Callable[[Any, str, list[Any]], Any]


async def _asyncpg_rows(connection: Any, sql: str, args: list[Any]) -> Sequence[Row]:
    rows: Sequence[Row] = await connection.fetch(sql, *args)
    return rows


async def _aiosqlite_rows(connection: Any, sql: str, args: list[Any]) -> Sequence[Row]:
    # One hop to the connection's thread instead of three (execute, fetch, close).
    rows: Sequence[Row] = await connection.execute_fetchall(sql, args)
    return rows


DRIVER_FETCHERS: dict[str, RowFetcher] = {"asyncpg": _asyncpg_rows, "aiosqlite": _aiosqlite_rows}


_REQUIRED = object()


class BindArguments:
    """A compiled statement's positional arguments, each value through its column type's bind
    processor, the way SQLAlchemy would send it."""

    def __init__(self, compiled: SQLCompiler, dialect: Dialect) -> None:
        binds = compiled.binds
        self._parameters = [
            (
                name,
                # Literals the dialect makes parameters of (SQLite's "OFFSET ?") keep their
                # values.
                _REQUIRED if binds[name].required else binds[name].value,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup or ()
        ]

    def __call__(self, values: Mapping[str, Any]) -> list[Any]:
        args = []
        for name, fixed, process in self._parameters:
            value = values[name] if fixed is _REQUIRED or name in values else fixed
            args.append(value if process is None else process(value))
        return args


class CompiledRead(Generic[Entity]):
    """One SELECT of a mapped table's columns, compiled for one dialect, that builds entities."""

    def __init__(self, statement: sa.Select[Any], entity: type[Entity], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self._statement = statement
        self._sql = compiled.string
        self._args = BindArguments(compiled, dialect)
        columns = list(statement.selected_columns)
        # Column keys are the entities' field names (mappers.py maps every column as itself).
        self._keys = [column.key for column in columns if column.key is not None]
        # Only the columns whose type converts the driver's value (enums, UTC datetimes, JSON
        # on SQLite, ...): the others are taken as they come.
        self._conversions = [
            (index, key, process)
            for index, (key, column) in enumerate(zip(self._keys, columns, strict=True))
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
        ]
        # Built the way the ORM loads rows: without running __init__, state set directly.
        self._new_entity = instrumentation.manager_of_class(entity).new_instance
        self._fetch = DRIVER_FETCHERS.get(dialect.driver)

    async def all(
        self, connection: AsyncConnection | RawConnection, driver_connection: Any, **params: Any
    ) -> list[Entity]:
        """Entities for `params`; `driver_connection` is `connection`'s own DBAPI connection."""
        if self._fetch is None:
            if not isinstance(connection, AsyncConnection):
                raise TypeError("reads without a driver fast path need an AsyncConnection")
            result = await connection.execute(self._statement, params)
            return [self._build(row, processed=True) for row in result]
        try:
            return await self.fetch(driver_connection, **params)
        except BaseException:
            # SQLAlchemy did not see this error, and the connection may be broken (a restarted
            # server, a query cut short by cancellation): its pool must not hand it out again.
            await connection.invalidate()
            raise

    async def fetch(self, driver_connection: Any, **params: Any) -> list[Entity]:
        """Entities for `params`, read on the driver's connection; what a failure means for the
        connection is the caller's to decide."""
        if self._fetch is None:
            raise TypeError(f"no driver fast path for {type(driver_connection).__name__}")
        rows = await self._fetch(driver_connection, self._sql, self._args(params))
        return [self._build(row, processed=False) for row in rows]

    def _build(self, row: Row, *, processed: bool) -> Entity:
        entity: Entity = self._new_entity()
        fields = vars(entity)
        fields.update(zip(self._keys, row, strict=True))
        if not processed:
            for index, key, process in self._conversions:
                fields[key] = process(row[index])
        return entity


class RawConnection:
    """A pooled connection taken without SQLAlchemy's `Connection` around it: no execution
    options, events or isolation level to set and reset, ~80 µs of CPU less per unit of work
    on this machine. For reads on the driver outside any transaction: the driver is in
    autocommit mode on both databases until someone begins one, and nobody does here."""

    def __init__(self, pooled: PoolProxiedConnection) -> None:
        self._pooled = pooled

    @classmethod
    async def take(cls, engine: AsyncEngine) -> RawConnection:
        return cls(await engine.raw_connection())

    @property
    def driver(self) -> Any:
        return self._pooled.driver_connection

    async def invalidate(self) -> None:
        # Both may close the driver's connection, which is awaitable only in SQLAlchemy's
        # greenlet context (as `AsyncConnection.close()` does it).
        await greenlet_spawn(self._pooled.invalidate)

    async def close(self) -> None:
        await greenlet_spawn(self._pooled.close)


async def driver_connection(connection: AsyncConnection) -> Any:
    """The driver's own connection under `connection`."""
    sync = connection.sync_connection
    if sync is not None and not sync.invalidated:
        # A live connection hands over its pooled connection without any I/O, so this skips
        # the greenlet hop of `get_raw_connection()` (~15 µs a unit of work).
        raw = sync.connection
    else:
        raw = await connection.get_raw_connection()
    return raw.driver_connection


def _by_id(table: sa.Table) -> sa.Select[Any]:
    return sa.select(table).where(table.c.id == sa.bindparam("id"))


class CompiledReads:
    """The hot reads compiled for one engine's dialect; built once, shared by its units of work."""

    def __init__(self, dialect: Dialect) -> None:
        self.on_driver = dialect.driver in DRIVER_FETCHERS
        m = tables.messages.c
        self.user_by_id = CompiledRead(_by_id(tables.users), User, dialect)
        self.bot_by_id = CompiledRead(_by_id(tables.bots), Bot, dialect)
        self.conversation_by_id = CompiledRead(_by_id(tables.conversations), Conversation, dialect)
        self.message_page = CompiledRead(
            sa.select(tables.messages)
            .where(m.conversation_id == sa.bindparam("conversation_id"))
            .where(m.seq > sa.bindparam("after_seq"))
            .order_by(m.seq)
            .limit(sa.bindparam("limit")),
            Message,
            dialect,
        )


ReadConnection = AsyncConnection | RawConnection


class DriverReads:
    """The compiled reads of one read-only unit of work, on whichever connection it holds now
    (`connection()` gives it)."""

    def __init__(
        self, compiled: CompiledReads, connection: Callable[[], Awaitable[ReadConnection]]
    ) -> None:
        self._compiled = compiled
        self._connection = connection

    async def _all(self, read: CompiledRead[Entity], **params: Any) -> list[Entity]:
        connection = await self._connection()
        driver = (
            connection.driver
            if isinstance(connection, RawConnection)
            else await driver_connection(connection)
        )
        return await read.all(connection, driver, **params)

    async def _by_id(self, read: CompiledRead[Entity], entity_id: UUID) -> Entity | None:
        found = await self._all(read, id=entity_id)
        return found[0] if found else None

    async def user(self, user_id: UUID) -> User | None:
        return await self._by_id(self._compiled.user_by_id, user_id)

    async def bot(self, bot_id: UUID) -> Bot | None:
        return await self._by_id(self._compiled.bot_by_id, bot_id)

    async def conversation(self, conversation_id: UUID) -> Conversation | None:
        return await self._by_id(self._compiled.conversation_by_id, conversation_id)

    async def message_page(
        self, conversation_id: UUID, *, after_seq: int, limit: int
    ) -> list[Message]:
        return await self._all(
            self._compiled.message_page,
            conversation_id=conversation_id,
            after_seq=after_seq,
            limit=limit,
        )
