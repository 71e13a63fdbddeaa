"""Fixtures of the contract suite beyond `uow_factory` (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest

from adapters.memory import InMemoryUnitOfWork
from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWorkFactory
from application.ports import UnitOfWorkFactory

IMPATIENT_SECONDS = 0.2


@pytest.fixture
async def impatient_uow_factory(uow_factory: UnitOfWorkFactory) -> AsyncIterator[UnitOfWorkFactory]:
    """Units of work of a second process on the same store, that wait at most 0.2 s for a lock
    (a row lock, SQLite's write lock, the in-memory store's)."""
    if isinstance(uow_factory, partial):  # the in-memory adapter: its database is shared
        yield partial(InMemoryUnitOfWork, *uow_factory.args, lock_timeout_seconds=IMPATIENT_SECONDS)
        return
    assert isinstance(uow_factory, SqlAlchemyUnitOfWorkFactory)
    url = uow_factory.engine.url.render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=2, lock_timeout_seconds=IMPATIENT_SECONDS)
    try:
        yield SqlAlchemyUnitOfWorkFactory(engine, writer_wait_seconds=IMPATIENT_SECONDS)
    finally:
        await engine.dispose()
