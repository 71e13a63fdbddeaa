"""Shared fixtures: real databases (SQLite, PostgreSQL) and units of work over every adapter.

PostgreSQL tests are skipped when the server is down on a developer machine, but fail the run in
CI (the `CI` environment variable), so a green CI always means they ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.memory import InMemoryDatabase, InMemoryUnitOfWork
from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.mappers import start_mappers
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWorkFactory
from application.ports import UnitOfWorkFactory
from tests.databases import (
    IN_CI,
    PostgresUnavailable,
    postgres_database,
    sqlite_database,
    truncate_all,
)

start_mappers()

SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
ALL_BACKENDS = ["memory", *SQL_BACKENDS]


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_database(tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    try:
        with postgres_database() as url:
            yield url
    except PostgresUnavailable as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {error}", pytrace=False)
        pytest.skip(str(error))


@pytest.fixture(params=SQL_BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


_engines: dict[str, AsyncEngine] = {}


async def clean_engine(url: str) -> AsyncEngine:
    """One engine per database for the whole run, with every table emptied before each test."""
    if url not in _engines:
        _engines[url] = create_engine(url)
    await truncate_all(_engines[url])
    return _engines[url]


@pytest.fixture
async def sql_engine(database_url: str) -> AsyncEngine:
    return await clean_engine(database_url)


@pytest.fixture(scope="session", autouse=True)
async def _dispose_engines() -> AsyncIterator[None]:
    yield
    for engine in _engines.values():
        await engine.dispose()


@pytest.fixture(params=ALL_BACKENDS)
async def uow_factory(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    """A unit-of-work factory over each adapter: the contract suite runs once per backend."""
    if request.param == "memory":
        return partial(InMemoryUnitOfWork, InMemoryDatabase())
    engine = await clean_engine(request.getfixturevalue(f"{request.param}_url"))
    return SqlAlchemyUnitOfWorkFactory(engine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly whether the PostgreSQL-backed tests ran, so a skip never passes unnoticed."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if "postgresql" in getattr(report, "keywords", {}) or "postgres" in getattr(
                report, "keywords", {}
            ):
                counts[outcome] += 1
    terminalreporter.write_line(
        "PostgreSQL-backed tests: "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    )
