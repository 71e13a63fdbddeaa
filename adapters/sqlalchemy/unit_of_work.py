"""The transaction boundary: one AsyncSession per `async with uow:` block."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from adapters.sqlalchemy import repositories as repos
from application.errors import ConcurrentUpdate, DuplicateKey


class SqlAlchemyUnitOfWork:
    """`read_only` units of work run on autocommit connections: no BEGIN/ROLLBACK round trips
    on PostgreSQL, and no write lock on SQLite (WAL readers run side by side)."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        reader_factory: async_sessionmaker[AsyncSession] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self._session_factory = (
            reader_factory if read_only and reader_factory is not None else session_factory
        )
        self._read_only = read_only
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._session

    async def __aenter__(self) -> Self:
        session = self._session_factory()
        self._session = session
        self.users = repos.SqlAlchemyUserRepository(session)
        self.refresh_tokens = repos.SqlAlchemyRefreshTokenRepository(session)
        self.bots = repos.SqlAlchemyBotRepository(session)
        self.knowledge = repos.SqlAlchemyKnowledgeRepository(session)
        self.api_keys = repos.SqlAlchemyApiKeyRepository(session)
        self.conversations = repos.SqlAlchemyConversationRepository(session)
        self.messages = repos.SqlAlchemyMessageRepository(session)
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
        session = self.session
        self._session = None
        # close() rolls back whatever was not committed, and (unlike rollback()) leaves loaded
        # objects readable by the caller instead of expiring them.
        await session.close()

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
