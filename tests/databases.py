"""Real databases for the tests: a fresh SQLite file and a fresh PostgreSQL database per run."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.migrations_runner import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CHATBOTS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = bool(os.environ.get("CI"))


class PostgresUnavailable(RuntimeError):
    pass


async def _postgres_admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _in_thread(fn: Callable[[], object]) -> None:
    """Set-up code runs its own event loop; a thread keeps it apart from the tests' running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(fn).result()


def _run(coro: Coroutine[object, object, None]) -> None:
    _in_thread(lambda: asyncio.run(coro))


@contextmanager
def postgres_database() -> Iterator[str]:
    """A migrated database of its own, dropped afterwards, so parallel runs never collide."""
    name = f"chatbots_test_{uuid.uuid4().hex[:12]}"
    try:
        _run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, sa.exc.SQLAlchemyError, TimeoutError) as error:
        raise PostgresUnavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {error}") from error
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        _in_thread(lambda: upgrade(url))
        yield url
    finally:
        _run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{directory / f'chatbots-{uuid.uuid4().hex[:8]}.db'}"
    _in_thread(lambda: upgrade(url))
    yield url


async def truncate_all(engine: sa.ext.asyncio.AsyncEngine) -> None:
    """Empty every table between tests; far cheaper than migrating a new database each time."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables.metadata.sorted_tables)
            await connection.exec_driver_sql(f"TRUNCATE {names} CASCADE")
        else:
            for table in reversed(tables.metadata.sorted_tables):
                await connection.execute(table.delete())


async def terminate_backend(backend_pid: int, admin: AsyncEngine) -> None:
    """Ends a PostgreSQL server process, as a server restart would."""
    async with admin.connect() as other:
        await other.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend_pid)})")
