"""The transaction boundary: one AsyncSession per `async with uow:` block."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from adapters.sqlalchemy import repositories as repos
from adapters.sqlalchemy.driver_reads import CompiledReads, DriverReads
from adapters.sqlalchemy.mappers import start_mappers
from application.errors import ConcurrentUpdate, DuplicateKey


class SqlAlchemyUnitOfWorkFactory:
    """Makes units of work over one engine; what they share is built here, once."""

    def __init__(self, engine: AsyncEngine) -> None:
        start_mappers()
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        # Read-only units of work use autocommit connections from the same pool: no
        # BEGIN/ROLLBACK round trips on PostgreSQL, no write lock on SQLite.
        self.reader_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.compiled_reads = CompiledReads(engine.dialect)

    def __call__(self, *, read_only: bool = False) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self, read_only=read_only)


class SqlAlchemyUnitOfWork:
    """A read-only unit of work holds one autocommit connection: its hot reads run on the
    driver's connection (`DriverReads`), the rest through a session bound to it. The session is
    opened on first use, so a request that only makes hot reads never pays for one."""

    def __init__(self, factory: SqlAlchemyUnitOfWorkFactory, *, read_only: bool = False) -> None:
        self._factory = factory
        self._read_only = read_only
        self._entered = False
        self._session: AsyncSession | None = None
        self._connection: AsyncConnection | None = None

    @property
    def session(self) -> AsyncSession:
        if not self._entered:
            raise RuntimeError("the unit of work is used outside `async with`")
        if self._session is None:
            sessions = self._factory.sessions
            connection = self._connection
            self._session = sessions() if connection is None else sessions(bind=connection)
        return self._session

    def _open_session(self) -> AsyncSession:
        return self.session

    async def __aenter__(self) -> Self:
        reads = None
        if self._read_only:
            self._connection = await self._factory.reader_engine.connect()
            reads = DriverReads(self._factory.compiled_reads, self._connection)
        self._entered = True
        session = self._open_session
        self.users = repos.SqlAlchemyUserRepository(session, reads)
        self.refresh_tokens = repos.SqlAlchemyRefreshTokenRepository(session)
        self.bots = repos.SqlAlchemyBotRepository(session, reads)
        self.knowledge = repos.SqlAlchemyKnowledgeRepository(session)
        self.api_keys = repos.SqlAlchemyApiKeyRepository(session)
        self.conversations = repos.SqlAlchemyConversationRepository(session, reads)
        self.messages = repos.SqlAlchemyMessageRepository(session, reads)
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
        session, connection = self._session, self._connection
        self._session, self._connection, self._entered = None, None, False
        try:
            if session is not None:
                # close() rolls back whatever was not committed, and (unlike rollback())
                # leaves loaded objects readable by the caller instead of expiring them.
                await session.close()
        finally:
            if connection is not None:
                await connection.close()

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        try:
            await self.session.commit()
        except StaleDataError as error:
            await self.session.rollback()
            raise ConcurrentUpdate("the resource was changed by another request") from error
        except IntegrityError as error:
            await self.session.rollback()
            raise DuplicateKey("a unique rule was broken") from error
        except OperationalError as error:
            # PostgreSQL's serialization failures and deadlocks surface here; the caller retries.
            await self.session.rollback()
            raise ConcurrentUpdate("the database refused the change; try again") from error

    async def rollback(self) -> None:
        await self.session.rollback()
