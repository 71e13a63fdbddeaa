"""Alembic environment: async engines, URL from the caller or CHATBOTS_DATABASE_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from adapters.sqlalchemy.database import DEFAULT_DATABASE_URL, create_engine, is_sqlite
from adapters.sqlalchemy.tables import metadata

config = context.config
target_metadata = metadata


def _database_url() -> str:
    return (
        config.attributes.get("database_url")
        or os.environ.get("CHATBOTS_DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place: batch mode recreates the table instead.
        render_as_batch=is_sqlite(url or _database_url()),
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
