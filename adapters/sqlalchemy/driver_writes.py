"""Writing units of work on the database driver's own connection.

Why: posting a message is the service's hottest write. In-process, a post to a knowledge bot
(lock the conversation, read its bot, insert two messages, update the conversation) cost 2.1 ms
of CPU through the ORM on this machine, and 0.8 ms with the same statements compiled once and run
on the driver's connection: the ORM's flush sorts a dependency graph, builds per-object state
and computes cache keys for every statement (see bench/).

How: a writing unit of work holds one pooled connection on which SQLAlchemy begins no
transaction (`database.without_transactions`), and `DriverTransaction` begins and ends the
transaction with the driver itself (asyncpg's `Transaction`, SQLite's `BEGIN IMMEDIATE`).
Conversations are read (locked when asked) into an identity map and remembered as loaded; at
commit, new conversations and messages are inserted, changed conversations get an UPDATE of the
changed columns, removed ones a DELETE. Bots are read the same way, detached, and handed to the
ORM only if the unit of work changes them (so their version check stays the ORM's). Everything
else goes through an ORM session bound to the same connection, which only ever flushes, first,
inside the same transaction. Statements are SQLAlchemy Core compiled by the engine's dialect,
with every value through its column type's bind processor, as the ORM would send them. Drivers
other than asyncpg and aiosqlite keep the ORM for everything.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.driver_reads import (
    BindArguments,
    CompiledRead,
    CompiledReads,
    driver_connection,
)
from application.errors import ConcurrentUpdate, DuplicateKey
from domain.bots import Bot
from domain.conversations import Conversation, Message


class _DriverOps(Protocol):
    """Transactions and statements on one driver's connection."""

    answered_errors: tuple[type[BaseException], ...]
    writers: asyncio.Lock | None

    def is_open(self, connection: Any) -> bool: ...
    async def begin(self, connection: Any) -> Any: ...
    async def commit(self, connection: Any, transaction: Any) -> None: ...
    async def rollback(self, connection: Any, transaction: Any) -> None: ...
    async def execute(self, connection: Any, sql: str, rows: list[list[Any]]) -> None: ...
    def translate(self, error: BaseException) -> Exception | None: ...


class _AsyncpgOps:
    # Row locks: writers to different conversations do not wait for each other.
    writers: asyncio.Lock | None = None

    def __init__(self) -> None:
        import asyncpg  # only where PostgreSQL is used: a SQLite worker never loads it

        # The server answered these: the connection is fine, only the transaction failed.
        self.answered_errors: tuple[type[BaseException], ...] = (asyncpg.PostgresError,)
        self._duplicate = asyncpg.IntegrityConstraintViolationError
        self._refused = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)

    def is_open(self, connection: Any) -> bool:
        # An error can be the server's last word: "terminating connection" (57P01) is one.
        return not connection.is_closed()

    async def begin(self, connection: Any) -> Any:
        transaction = connection.transaction()
        await transaction.start()
        return transaction

    async def commit(self, connection: Any, transaction: Any) -> None:
        await transaction.commit()

    async def rollback(self, connection: Any, transaction: Any) -> None:
        await transaction.rollback()

    async def execute(self, connection: Any, sql: str, rows: list[list[Any]]) -> None:
        if len(rows) == 1:
            await connection.execute(sql, *rows[0])
        else:
            await connection.executemany(sql, rows)

    def translate(self, error: BaseException) -> Exception | None:
        if isinstance(error, self._duplicate):
            return DuplicateKey("a unique rule was broken")
        if isinstance(error, self._refused):
            return ConcurrentUpdate("the database refused the change; try again")
        return None


class _AiosqliteOps:
    answered_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self) -> None:
        # SQLite has one writer at a time. Writers of this process queue here, in order and
        # woken at once, rather than in SQLite's busy handler, which polls with sleeps of up to
        # 100 ms: under load that turned a 50 ms post into 2 s at the 99th percentile.
        self.writers: asyncio.Lock | None = asyncio.Lock()

    def is_open(self, connection: Any) -> bool:
        return True

    async def begin(self, connection: Any) -> Any:
        # IMMEDIATE takes the write lock up front (see database.py: what makes concurrent
        # appends to one conversation queue up instead of failing).
        await connection.execute_fetchall("BEGIN IMMEDIATE")

    async def commit(self, connection: Any, transaction: Any) -> None:
        await connection.commit()

    async def rollback(self, connection: Any, transaction: Any) -> None:
        await connection.rollback()

    async def execute(self, connection: Any, sql: str, rows: list[list[Any]]) -> None:
        if len(rows) == 1:
            await connection.execute_fetchall(sql, rows[0])
        else:
            cursor = await connection.executemany(sql, rows)
            await cursor.close()

    def translate(self, error: BaseException) -> Exception | None:
        if isinstance(error, sqlite3.IntegrityError):
            return DuplicateKey("a unique rule was broken")
        if isinstance(error, sqlite3.OperationalError):  # "database is locked" past the timeout
            return ConcurrentUpdate("the database refused the change; try again")
        return None


DRIVER_OPS: dict[str, Callable[[], _DriverOps]] = {
    "asyncpg": _AsyncpgOps,
    "aiosqlite": _AiosqliteOps,
}


# As long as SQLite's own busy timeout (database.py): past it, the caller is told to retry.
WRITER_WAIT_SECONDS = 30.0


class CompiledWrite:
    """One INSERT, UPDATE or DELETE of a mapped table, compiled for one dialect."""

    def __init__(self, statement: sa.Insert | sa.Update | sa.Delete, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.args = BindArguments(compiled, dialect)


def _values(table: sa.Table, keys: Sequence[str]) -> dict[str, Any]:
    return {key: sa.bindparam(f"v_{key}", type_=table.c[key].type) for key in keys}


def _where_id(table: sa.Table) -> sa.ColumnElement[bool]:
    return table.c.id == sa.bindparam("w_id", type_=table.c.id.type)


class CompiledWrites:
    """The statements of conversations and messages for one dialect; shared by units of work."""

    def __init__(self, dialect: Dialect, reads: CompiledReads) -> None:
        self._dialect = dialect
        c = tables.conversations
        self.conversation_by_id = reads.conversation_by_id
        self.bot_by_id = reads.bot_by_id
        self.conversation_for_update = CompiledRead(
            sa.select(c).where(c.c.id == sa.bindparam("id")).with_for_update(),
            Conversation,
            dialect,
        )
        self.conversation_keys = [column.key for column in c.columns]
        self.message_keys = [column.key for column in tables.messages.columns]
        self.insert_conversation = self._insert(c)
        self.insert_message = self._insert(tables.messages)
        self.delete_conversation = CompiledWrite(sa.delete(c).where(_where_id(c)), dialect)
        self._updates: dict[frozenset[str], CompiledWrite] = {}

    def _insert(self, table: sa.Table) -> CompiledWrite:
        keys = [column.key for column in table.columns]
        return CompiledWrite(sa.insert(table).values(_values(table, keys)), self._dialect)

    def update_conversation(self, keys: frozenset[str]) -> CompiledWrite:
        """Sets only the changed columns: a concurrent change to another one is not undone."""
        write = self._updates.get(keys)
        if write is None:
            c = tables.conversations
            statement = sa.update(c).where(_where_id(c)).values(_values(c, sorted(keys)))
            write = self._updates[keys] = CompiledWrite(statement, self._dialect)
        return write


def _prefixed(entity: object, keys: Sequence[str]) -> dict[str, Any]:
    fields = vars(entity)
    return {f"v_{key}": fields[key] for key in keys}


class DriverTransaction:
    """The transaction of one writing unit of work, run on the driver's connection."""

    def __init__(self, ops: _DriverOps, writes: CompiledWrites) -> None:
        self._ops = ops
        self._writes = writes
        self._connection: AsyncConnection | None = None
        self._driver: Any = None
        self._transaction: Any = None
        self.active = False
        self._holds_writers = False
        self._loaded: dict[UUID, tuple[Conversation, tuple[Any, ...]]] = {}
        self._bots: dict[UUID, Bot | None] = {}
        self._locked: set[UUID] = set()
        self._new_conversations: list[Conversation] = []
        self._new_messages: list[Message] = []
        self._removed: list[Conversation] = []

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the transaction has not begun")
        return self._connection

    async def begin(self, engine: AsyncEngine) -> None:
        """Takes a connection from `engine`'s pool (whose connections must be in autocommit
        mode) and begins the transaction on it."""
        writers = self._ops.writers
        if writers is not None:  # first: a writer waiting for its turn holds no connection
            try:
                await asyncio.wait_for(writers.acquire(), WRITER_WAIT_SECONDS)
            except TimeoutError:
                raise ConcurrentUpdate("the database is busy; try again") from None
            self._holds_writers = True
        self.active = True
        try:
            self._connection = await engine.connect()
            self._driver = await driver_connection(self._connection)
            self._transaction = await self._call(self._ops.begin(self._driver))
        except BaseException:
            self._end()
            if self._connection is not None:
                await self._connection.close()
            raise

    def _end(self) -> None:
        self.active = False
        if self._holds_writers and self._ops.writers is not None:
            self._holds_writers = False
            self._ops.writers.release()

    async def _call(self, operation: Coroutine[Any, Any, Any]) -> Any:
        if not self.active:
            operation.close()
            raise RuntimeError("the unit of work's transaction has ended")
        try:
            return await operation
        except BaseException as error:
            answered = isinstance(error, self._ops.answered_errors)
            if not (answered and self._ops.is_open(self._driver)):
                # SQLAlchemy did not see this error, and the connection may be broken (a
                # restarted server, a statement cut short by cancellation): its pool must not
                # hand it out again.
                self._end()
                await self.connection.invalidate()
                raise
            translated = self._ops.translate(error)
            if translated is None:
                raise
            raise translated from error

    # -- conversations --

    def _snapshot(self, conversation: Conversation) -> tuple[Any, ...]:
        fields = vars(conversation)
        return tuple(fields[key] for key in self._writes.conversation_keys)

    async def conversation(self, conversation_id: UUID, *, lock: bool) -> Conversation | None:
        known = self._loaded.get(conversation_id)
        if known is not None and (not lock or conversation_id in self._locked):
            return known[0]
        read = self._writes.conversation_for_update if lock else self._writes.conversation_by_id
        found = await self._call(read.fetch(self._driver, id=conversation_id))
        if not found:
            return None
        conversation: Conversation = found[0]
        if known is not None:  # locked now: the row as it is under the lock, same object
            vars(known[0]).update(
                {key: vars(conversation)[key] for key in self._writes.conversation_keys}
            )
            conversation = known[0]
        self._loaded[conversation_id] = (conversation, self._snapshot(conversation))
        if lock:
            self._locked.add(conversation_id)
        return conversation

    # -- bots --

    async def bot(self, bot_id: UUID) -> Bot | None:
        """A bot as the ORM would load it, detached: the ORM session takes it over (version
        check included) only if the unit of work changes or deletes it. (So a writing unit of
        work reads bots by id only through here, never also through its session.)"""
        if bot_id not in self._bots:
            found = await self._call(self._writes.bot_by_id.fetch(self._driver, id=bot_id))
            if found:
                make_transient_to_detached(found[0])
            self._bots[bot_id] = found[0] if found else None
        return self._bots[bot_id]

    def changed_bots(self) -> list[Bot]:
        return [bot for bot in self._bots.values() if bot is not None and inspect(bot).modified]

    def add_conversation(self, conversation: Conversation) -> None:
        self._new_conversations.append(conversation)

    def remove_conversation(self, conversation: Conversation) -> None:
        self._loaded.pop(conversation.id, None)
        self._removed.append(conversation)

    def add_message(self, message: Message) -> None:
        self._new_messages.append(message)

    def take_new(self) -> list[object]:
        """Hands the conversations and messages not yet inserted over to the caller."""
        new: list[object] = [*self._new_conversations, *self._new_messages]
        self._new_conversations, self._new_messages = [], []
        return new

    # -- the end --

    async def flush(self) -> None:
        writes, driver, execute = self._writes, self._driver, self._ops.execute
        if self._new_conversations:
            keys = writes.conversation_keys
            rows = [
                writes.insert_conversation.args(_prefixed(c, keys)) for c in self._new_conversations
            ]
            await self._call(execute(driver, writes.insert_conversation.sql, rows))
            for conversation in self._new_conversations:
                self._loaded[conversation.id] = (conversation, self._snapshot(conversation))
            self._new_conversations = []
        for conversation_id, (conversation, loaded) in list(self._loaded.items()):
            now = self._snapshot(conversation)
            if now == loaded:
                continue
            keys = writes.conversation_keys
            changed = frozenset(k for k, a, b in zip(keys, loaded, now, strict=True) if a != b)
            update = writes.update_conversation(changed)
            values = _prefixed(conversation, sorted(changed))
            values["w_id"] = conversation_id
            await self._call(execute(driver, update.sql, [update.args(values)]))
            self._loaded[conversation_id] = (conversation, now)
        if self._new_messages:
            keys = writes.message_keys
            rows = [writes.insert_message.args(_prefixed(m, keys)) for m in self._new_messages]
            await self._call(execute(driver, writes.insert_message.sql, rows))
            self._new_messages = []
        if self._removed:
            delete = writes.delete_conversation
            rows = [delete.args({"w_id": c.id}) for c in self._removed]
            await self._call(execute(driver, delete.sql, rows))
            self._removed = []

    async def commit(self) -> None:
        try:
            await self._call(self._ops.commit(self._driver, self._transaction))
        finally:
            self._end()

    async def rollback(self) -> None:
        """Ends the transaction and forgets what it had not written."""
        self._new_conversations, self._new_messages, self._removed = [], [], []
        self._loaded.clear()
        self._locked.clear()
        self._bots.clear()
        if self.active:
            try:
                if not self.connection.invalidated:
                    await self._call(self._ops.rollback(self._driver, self._transaction))
            finally:
                self._end()
