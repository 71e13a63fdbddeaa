"""The transaction boundary: one transaction per `async with uow:` block."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from adapters.sqlalchemy import repositories as repos
from adapters.sqlalchemy.database import without_transactions
from adapters.sqlalchemy.driver_reads import CompiledReads, DriverReads, RawConnection
from adapters.sqlalchemy.driver_writes import DRIVER_OPS, CompiledWrites, DriverTransaction
from adapters.sqlalchemy.mappers import start_mappers
from application.errors import ConcurrentUpdate, DuplicateKey


class SqlAlchemyUnitOfWorkFactory:
    """Makes units of work over one engine; what they share is built here, once."""

    def __init__(self, engine: AsyncEngine) -> None:
        start_mappers()
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        # Connections without a transaction begun by SQLAlchemy: reads need no BEGIN/ROLLBACK
        # round trips on PostgreSQL and no write lock on SQLite, and writing units of work begin
        # and end their transaction with the driver (driver_writes.py).
        self.autocommit_engine = without_transactions(engine)
        # Sessions of read-only units of work: autocommit, on a connection they take themselves.
        self.reading_sessions = async_sessionmaker(
            self.autocommit_engine, expire_on_commit=False, autoflush=False
        )
        self.engine = engine
        self.compiled_reads = CompiledReads(engine.dialect)
        ops = DRIVER_OPS.get(engine.dialect.driver)
        self.driver_ops = None if ops is None else ops()
        self.compiled_writes = CompiledWrites(engine.dialect, self.compiled_reads)

    def __call__(self, *, read_only: bool = False) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self, read_only=read_only)


class SqlAlchemyUnitOfWork:
    """A unit of work holds one pooled connection on which SQLAlchemy begins no transaction.

    Read-only (asyncpg, aiosqlite): a raw pooled connection, taken on the first hot read, for
    its hot reads on the driver (`DriverReads`); a read that needs the ORM opens a session, whose
    connection takes over from the raw one (never two at once). Writing:
    `DriverTransaction` runs its transaction, conversations, messages and bot reads included;
    everything else goes through an ORM session bound to the same connection, which only
    flushes. Sessions are opened on first use, so a request that needs none never pays for one.
    Other drivers: autocommit Core reads, and one ORM session for all writes.
    """

    def __init__(self, factory: SqlAlchemyUnitOfWorkFactory, *, read_only: bool = False) -> None:
        self._factory = factory
        self._read_only = read_only
        self._entered = False
        self._session: AsyncSession | None = None
        self._connection: AsyncConnection | None = None
        self._raw: RawConnection | None = None
        self._raw_released: asyncio.Future[None] | None = None
        self._transaction: DriverTransaction | None = None

    @property
    def session(self) -> AsyncSession:
        if not self._entered:
            raise RuntimeError("the unit of work is used outside `async with`")
        if self._transaction is not None and not self._transaction.active:
            raise RuntimeError("the unit of work's transaction has ended")
        if self._session is None:
            factory, connection = self._factory, self._connection
            if connection is not None:
                self._session = factory.sessions(bind=connection)
            elif self._read_only:
                self._session = factory.reading_sessions()
                if self._raw is not None:
                    # From now on this unit of work reads through the session's connection.
                    # Its raw one goes back to the pool before the session can wait for one:
                    # holding one connection while waiting for another starves a busy pool.
                    self._raw_released = asyncio.ensure_future(self._raw.close())
                    self._raw = None
            else:
                self._session = factory.sessions()
        return self._session

    async def _read_connection(self) -> AsyncConnection | RawConnection:
        """Where hot reads run: the session's connection once there is a session, else a raw
        pooled connection taken on the first read."""
        if self._connection is not None:
            return self._connection
        if self._session is not None:
            return await self._session.connection()
        if self._raw is None:
            self._raw = await RawConnection.take(self._factory.engine)
        return self._raw

    def _open_session(self) -> AsyncSession:
        return self.session

    async def __aenter__(self) -> Self:
        factory = self._factory
        reads = transaction = None
        if self._read_only:
            if not factory.compiled_reads.on_driver:  # Core reads need an AsyncConnection
                self._connection = await factory.autocommit_engine.connect()
            reads = DriverReads(factory.compiled_reads, self._read_connection)
        elif factory.driver_ops is not None:
            transaction = DriverTransaction(factory.driver_ops, factory.compiled_writes)
            await transaction.begin(factory.autocommit_engine)
            self._connection, self._transaction = transaction.connection, transaction
        self._entered = True
        session = self._open_session
        self.users = repos.SqlAlchemyUserRepository(session, reads)
        self.refresh_tokens = repos.SqlAlchemyRefreshTokenRepository(session)
        self.bots = repos.SqlAlchemyBotRepository(session, reads, transaction)
        self.knowledge = repos.SqlAlchemyKnowledgeRepository(session)
        self.api_keys = repos.SqlAlchemyApiKeyRepository(session)
        self.conversations = repos.SqlAlchemyConversationRepository(session, reads, transaction)
        self.messages = repos.SqlAlchemyMessageRepository(session, reads, transaction)
        self.conversation_log = repos.SqlAlchemyConversationLog(self.conversations, self.messages)
        self.feedback = repos.SqlAlchemyFeedbackRepository(session)
        self.idempotency = repos.SqlAlchemyIdempotencyRepository(session)
        self.stats = repos.SqlAlchemyStatsReader(session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, connection, transaction = self._session, self._connection, self._transaction
        raw, raw_released = self._raw, self._raw_released
        self._session, self._connection, self._transaction, self._raw = None, None, None, None
        self._raw_released = None
        self._entered = False
        try:
            if session is not None:
                # close() rolls back whatever was not committed, and (unlike rollback())
                # leaves loaded objects readable by the caller instead of expiring them.
                await session.close()
        finally:
            try:
                # Whatever happened above: a connection must not go back to the pool inside
                # a transaction, nor SQLite's writers wait for one that will never end.
                if transaction is not None and transaction.active:
                    await transaction.rollback()
            finally:
                if connection is not None:
                    await connection.close()
                if raw is not None:
                    await raw.close()
                if raw_released is not None:
                    await raw_released

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        transaction = self._transaction
        try:
            if transaction is None:
                await self.session.commit()
                return
            changed_bots = transaction.changed_bots()
            if changed_bots:
                self.session.add_all(changed_bots)
            if self._session is not None:
                if self._session.new:
                    # New ORM rows may be parents or children of new conversations and
                    # messages: the ORM inserts them all, in dependency order.
                    self._session.add_all(transaction.take_new())
                await self._session.flush()
            await transaction.flush()
            await transaction.commit()
        except StaleDataError as error:
            await self.rollback()
            raise ConcurrentUpdate("the resource was changed by another request") from error
        except IntegrityError as error:
            await self.rollback()
            raise DuplicateKey("a unique rule was broken") from error
        except OperationalError as error:
            # PostgreSQL's serialization failures and deadlocks surface here; the caller retries.
            await self.rollback()
            raise ConcurrentUpdate("the database refused the change; try again") from error
        except (DuplicateKey, ConcurrentUpdate):  # from the driver's own statements
            await self.rollback()
            raise

    async def rollback(self) -> None:
        if self._transaction is None:
            await self.session.rollback()
            return
        if self._session is not None:
            await self._session.rollback()
        await self._transaction.rollback()
