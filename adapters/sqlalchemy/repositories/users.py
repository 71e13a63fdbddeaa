"""Users and their refresh tokens."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.repositories.lookups import Lookup
from adapters.sqlalchemy.store import SessionSource
from application.pagination import Keyset
from domain.users import RefreshToken, Role, User


@translating
class SqlAlchemyUserRepository:
    def __init__(self, session: SessionSource, find: Lookup[User]) -> None:
        self._session = session
        self._find = find

    async def add(self, user: User) -> None:
        (await self._session()).add(user)

    async def get(self, user_id: UUID) -> User | None:
        return await self._find(user_id)

    async def get_by_email(self, email: str) -> User | None:
        query = sa.select(User).where(tables.users.c.email == email)
        return (await (await self._session()).execute(query)).scalar_one_or_none()

    async def list_page(self, *, after: Keyset | None, limit: int) -> list[User]:
        c = tables.users.c
        query = sa.select(User).order_by(c.created_at, c.id).limit(limit)
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.id) > sa.tuple_(after.value, after.id))
        return list((await (await self._session()).scalars(query)).all())

    async def count_admins(self) -> int:
        c = tables.users.c
        query = sa.select(sa.func.count()).where(c.role == Role.ADMIN, c.is_active.is_(True))
        return int((await (await self._session()).execute(query)).scalar_one())


@translating
class SqlAlchemyRefreshTokenRepository:
    def __init__(self, session: SessionSource) -> None:
        self._session = session

    async def add(self, token: RefreshToken) -> None:
        (await self._session()).add(token)

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        query = sa.select(RefreshToken).where(tables.refresh_tokens.c.token_hash == token_hash)
        return (await (await self._session()).execute(query)).scalar_one_or_none()

    async def get_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        query = (
            sa.select(RefreshToken)
            .where(tables.refresh_tokens.c.token_hash == token_hash)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await (await self._session()).execute(query)).scalar_one_or_none()

    async def _revoke(self, condition: sa.ColumnElement[bool], now: datetime) -> None:
        c = tables.refresh_tokens.c
        await (await self._session()).execute(
            sa.update(RefreshToken)
            .where(condition, c.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )

    async def revoke_family(self, family_id: UUID, now: datetime) -> None:
        await self._revoke(tables.refresh_tokens.c.family_id == family_id, now)

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> None:
        await self._revoke(tables.refresh_tokens.c.user_id == user_id, now)
