"""The transaction boundary: one transaction per `async with uow:` block (store.py says how).

What each repository method runs is fixed here, when the unit of work is built, by its kind:
read-only units read the caller, bots and conversations with the named reads; writing units
read them through their session (bots with the named read, then tracked by it), and write the
hot path through the conversation log.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from adapters.sqlalchemy import repositories as repos
from adapters.sqlalchemy.conversation_log import (
    LogStatements,
    ReadOnlyConversationLog,
    SqlAlchemyConversationLog,
)
from adapters.sqlalchemy.database import LOCK_TIMEOUT_SECONDS, without_transactions
from adapters.sqlalchemy.mappers import start_mappers
from adapters.sqlalchemy.queries.drivers import driver_for
from adapters.sqlalchemy.queries.reads import CompiledReads, Reads
from adapters.sqlalchemy.queries.statements import AutocommitStatements, TransactionStatements
from adapters.sqlalchemy.repositories.lookups import through_session, tracked
from adapters.sqlalchemy.store import ReadingConnection, SessionSource, WriterQueue, WritingSession
from application.ports import ConversationLog
from domain.bots import Bot
from domain.conversations import Conversation
from domain.users import User


class SqlAlchemyUnitOfWorkFactory:
    """Makes units of work over one engine; what they share is built here, once.

    `writer_wait_seconds`: how long a SQLite writer waits for this process's other writers
    (as long as SQLite's own busy timeout, database.py).
    """

    def __init__(
        self, engine: AsyncEngine, *, writer_wait_seconds: float = LOCK_TIMEOUT_SECONDS
    ) -> None:
        start_mappers()
        self.engine = engine
        self.driver = driver_for(engine.dialect)  # refuses the drivers we do not ship
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        # Sessions of read-only units of work: in the driver's autocommit mode.
        self.reading_sessions = async_sessionmaker(
            without_transactions(engine), expire_on_commit=False, autoflush=False
        )
        self.reads = CompiledReads(engine.dialect)
        self.log_statements = LogStatements(engine.dialect)
        self.writers = WriterQueue(writer_wait_seconds) if engine.dialect.name == "sqlite" else None

    def __call__(self, *, read_only: bool = False) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self, read_only=read_only)


class SqlAlchemyUnitOfWork:
    def __init__(self, factory: SqlAlchemyUnitOfWorkFactory, *, read_only: bool = False) -> None:
        self._factory = factory
        self._read_only = read_only
        self._reading: ReadingConnection | None = None
        self._writing: WritingSession | None = None
        self._log: SqlAlchemyConversationLog | None = None

    async def __aenter__(self) -> Self:
        factory = self._factory
        if self._read_only:
            reading = ReadingConnection(factory.engine, factory.reading_sessions)
            self._reading = reading
            session: SessionSource = reading.session
            reads = Reads(factory.reads, AutocommitStatements(factory.driver, reading))
            self.users = repos.SqlAlchemyUserRepository(session, reads.user)
            self.bots = repos.SqlAlchemyBotRepository(session, reads.bot)
            self.conversations = repos.SqlAlchemyConversationRepository(session, reads.conversation)
            self.conversation_log: ConversationLog = ReadOnlyConversationLog()
        else:
            writing = WritingSession(factory.sessions, factory.driver, factory.writers)
            await writing.begin()
            self._writing = writing
            session = writing.session
            statements = TransactionStatements(factory.driver, writing.connection)
            reads = Reads(factory.reads, statements)
            self.users = repos.SqlAlchemyUserRepository(session, through_session(session, User))
            self.bots = repos.SqlAlchemyBotRepository(session, tracked(session, Bot, reads.bot))
            self.conversations = repos.SqlAlchemyConversationRepository(
                session, through_session(session, Conversation)
            )
            self._log = SqlAlchemyConversationLog(factory.log_statements, statements, session)
            self.conversation_log = self._log
        self.refresh_tokens = repos.SqlAlchemyRefreshTokenRepository(session)
        self.knowledge = repos.SqlAlchemyKnowledgeRepository(session)
        self.api_keys = repos.SqlAlchemyApiKeyRepository(session)
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
        reading, writing = self._reading, self._writing
        self._reading = self._writing = None
        if reading is not None:
            await reading.close()
        if writing is not None:
            await writing.close()

    async def commit(self) -> None:
        """Flushes what the session holds and commits; the transaction then has ended."""
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        transaction = self._transaction()
        if self._log is not None:
            try:
                await self._log.store_locked()
            except BaseException:
                await transaction.rollback()
                raise
        await transaction.commit()

    async def rollback(self) -> None:
        if self._writing is not None:
            await self._writing.rollback()

    def _transaction(self) -> WritingSession:
        if self._writing is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._writing
