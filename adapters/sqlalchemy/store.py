"""The connection a unit of work holds: one at a time, for reading or for one transaction.

A writing unit of work is one `AsyncSession` and the one transaction SQLAlchemy begins on its
connection; the ORM and the compiled statements (queries/, conversation_log.py) both run there.
On SQLite, writers of this process first queue on an asyncio lock (`WriterQueue`), before they
take a connection, and SQLite's `BEGIN IMMEDIATE` (database.py) then never waits for another
writer of the same process.

A read-only unit of work runs in the driver's autocommit mode: no BEGIN/ROLLBACK round trips on
PostgreSQL, no lock on SQLite. Its hot reads take a pooled connection raw, without SQLAlchemy's
`Connection` around it (cheaper by a measurable share of a request, bench/RESULTS.md); a read
that needs the ORM opens a session, whose connection takes over after the raw one went back to
the pool — so a unit of work never holds two, and never waits for a second while holding one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from adapters.sqlalchemy.errors import DETAILS, translated
from adapters.sqlalchemy.queries.drivers import Driver
from application.errors import StoreBusy

# How repositories reach their unit of work's session (opened on first use by read-only ones).
SessionSource = Callable[[], Awaitable[AsyncSession]]


async def in_greenlet(pool_call: Callable[[], None]) -> None:
    """Runs a call on a raw pooled connection that may await the driver (returning it to the
    pool, invalidating it) in SQLAlchemy's greenlet context, as `AsyncConnection.close()` does.
    Not public API (`sqlalchemy.util.greenlet_spawn`): pinned by
    tests/integration/test_sqlalchemy_queries.py."""
    await greenlet_spawn(pool_call)


class WriterQueue:
    """SQLite has one writer at a time. The writers of this process wait here, in order and
    woken at once, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms
    (under load that multiplied the 99th percentile of posts, bench/RESULTS.md). The wait is
    bounded like SQLite's own busy timeout: past it the caller hears `StoreBusy`."""

    def __init__(self, wait_seconds: float) -> None:
        self._lock = asyncio.Lock()
        self._wait_seconds = wait_seconds

    async def enter(self) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), self._wait_seconds)
        except TimeoutError:
            raise StoreBusy(DETAILS[StoreBusy]) from None

    def leave(self) -> None:
        self._lock.release()


class ReadingConnection:
    """The one connection of a read-only unit of work, taken on first use."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._engine = engine
        self._sessions = sessions
        self._raw: PoolProxiedConnection | None = None
        self._session: AsyncSession | None = None
        self._session_connection: AsyncConnection | None = None
        self._session_driver: Any = None

    async def driver_connection(self) -> Any:
        if self._session is not None:
            if self._session_connection is None:
                connection = await self._session.connection()
                raw = await connection.get_raw_connection()
                self._session_connection, self._session_driver = connection, raw.driver_connection
            return self._session_driver
        if self._raw is None:
            self._raw = await self._engine.raw_connection()
        return self._raw.driver_connection

    async def invalidate(self) -> None:
        if self._session_connection is not None:
            connection, self._session_connection = self._session_connection, None
            await connection.invalidate()
        elif self._raw is not None:
            raw, self._raw = self._raw, None
            await in_greenlet(raw.invalidate)

    async def session(self) -> AsyncSession:
        if self._session is None:
            if self._raw is not None:
                # Back to the pool before the session waits for a connection: holding one
                # while waiting for another starves a busy pool.
                raw, self._raw = self._raw, None
                await in_greenlet(raw.close)
            self._session = self._sessions()
        return self._session

    async def close(self) -> None:
        raw, session = self._raw, self._session
        self._raw = self._session = self._session_connection = self._session_driver = None
        try:
            if session is not None:
                await session.close()
        finally:
            if raw is not None:
                await in_greenlet(raw.close)


class WritingSession:
    """The session and transaction of a writing unit of work; ended by commit or rollback."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        driver: Driver,
        writers: WriterQueue | None,
    ) -> None:
        self._sessions = sessions
        self._driver = driver
        self._writers = writers
        self._session: AsyncSession | None = None
        self._connection: AsyncConnection | None = None
        self._queued = False

    async def begin(self) -> None:
        if self._writers is not None:
            await self._writers.enter()
            self._queued = True
        self._session = self._sessions()

    async def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work's transaction has ended")
        return self._session

    async def connection(self) -> AsyncConnection:
        """The session's connection, inside its transaction (begun on the first call)."""
        if self._connection is None:
            connection = await (await self.session()).connection()
            pooled = await connection.get_raw_connection()
            try:
                await self._driver.begin(pooled)
            except BaseException as error:
                if not self._driver.answered(error, pooled.driver_connection):
                    await connection.invalidate()
                raise
            self._connection = connection
        return self._connection

    # The connections above are only taken inside a repository's or the log's methods, which
    # translate database errors (errors.py); commit is the unit of work's own call.
    @translated
    async def commit(self) -> None:
        try:
            await (await self.session()).commit()
        except BaseException:
            await self.close()
            raise
        # Committing released the connection; the session has nothing left to close, and its
        # objects stay readable (`expire_on_commit=False`).
        self._session = self._connection = None
        self._leave_queue()

    async def rollback(self) -> None:
        await self.close()

    async def close(self) -> None:
        """Ends the transaction (rolled back unless committed) and frees what it held, whatever
        fails on the way: a connection must not go back to the pool inside a transaction, nor
        keep its row locks, nor SQLite's other writers wait for it."""
        session, connection = self._session, self._connection
        self._session = self._connection = None
        try:
            if session is not None:
                # Unlike rollback(), close() leaves loaded objects readable by the caller.
                await session.close()
        finally:
            try:
                if connection is not None and not connection.closed:
                    await connection.close()  # close() failed half-way: roll back here
            finally:
                self._leave_queue()

    def _leave_queue(self) -> None:
        if self._queued and self._writers is not None:
            self._queued = False
            self._writers.leave()
