"""Engines for the two supported databases, set up the way this service relies on them."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chatbots.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
UNMANAGED_TRANSACTIONS = "chatbots_unmanaged_transactions"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson for JSON columns (message metadata, engine config): stdlib json was ~6% of the CPU of
# reading a page of history.
JSON_OPTIONS: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def create_engine(url: str, *, pool_size: int = 20, max_overflow: int = 0) -> AsyncEngine:
    options: dict[str, Any] = {
        **JSON_OPTIONS,
        # Connections kept open, not opened per burst: under load, overflow connections are
        # opened and closed all the time, and on SQLite each is a thread and four PRAGMAs.
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        # Waiting for a connection is bounded: past it the caller gets an error, not a hang.
        "pool_timeout": 30,
        # A statement's parameters (emails, password hashes, tokens) never reach an error
        # message, and so never a log line.
        "hide_parameters": True,
    }
    if is_sqlite(url):
        if make_url(url).database in (None, "", ":memory:"):  # one shared connection, no pool
            del options["pool_size"], options["max_overflow"], options["pool_timeout"]
        # Reset on return is `_on_reset` below: a rollback only if a transaction is open.
        engine = create_async_engine(url, pool_reset_on_return=None, **options)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, **options)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that "begin" below decides how to begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(UNMANAGED_TRANSACTIONS):
            return  # reads on their own, or a transaction the unit of work runs itself
        # IMMEDIATE takes the write lock up front. A deferred transaction that read first and
        # writes later fails with SQLITE_BUSY_SNAPSHOT under concurrency instead of waiting,
        # so this is what makes concurrent appends to one conversation queue up safely.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        # Every call on an aiosqlite connection is a hop to its thread and back: a connection
        # that holds no transaction (most: reads, committed units of work) goes back as it is.
        if state.asyncio_safe and record.driver_connection.in_transaction:
            dbapi_connection.rollback()


def without_transactions(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, on whose connections SQLAlchemy never begins a transaction: each read runs on
    its own, and a writing unit of work begins and ends its transaction with the driver."""
    if engine.dialect.name == "sqlite":
        # The driver is in autocommit mode from the start (`_on_connect`): a flag for
        # `_on_begin` does it, without switching the isolation level at every checkout and
        # back at every return, each a hop to the connection's thread.
        return engine.execution_options(**{UNMANAGED_TRANSACTIONS: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")
