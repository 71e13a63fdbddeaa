"""Migrations: every revision goes up and down cleanly, and they match the mapped tables."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.migrations_runner import downgrade, upgrade
from adapters.sqlalchemy.readiness import MIGRATIONS_DIR
from adapters.sqlalchemy.tables import metadata
from tests.databases import postgres_database, sqlite_database

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (these tests move the schema up and down)."""
    if request.param == "sqlite":
        with sqlite_database(tmp_path) as url:
            yield url
    else:
        request.getfixturevalue("postgresql_url")  # skips or fails the same way as elsewhere
        with postgres_database() as url:
            yield url


def _blocking(fn, *args):  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


async def _schema_diff(url: str) -> list[object]:
    engine = create_engine(url)

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_mapped_tables_and_migrations_do_not_drift(empty_database: str) -> None:
    assert await _schema_diff(empty_database) == []


async def test_every_revision_downgrades_and_upgrades_again(empty_database: str) -> None:
    revisions = list(ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions())
    for revision in revisions:  # newest first
        _blocking(downgrade, empty_database, revision.down_revision or "base")
    _blocking(upgrade, empty_database)
    assert await _schema_diff(empty_database) == []


def test_the_readiness_probe_expects_the_newest_migration() -> None:
    from adapters.sqlalchemy.readiness import SCHEMA_HEAD

    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == SCHEMA_HEAD
