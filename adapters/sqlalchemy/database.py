"""Engines for the two supported databases, set up the way this service relies on them.

Waits are bounded everywhere: for a pooled connection (`pool_timeout_seconds`), for a row lock
(PostgreSQL's `lock_timeout`), for SQLite's write lock (its busy timeout). Past them the caller
hears `StoreBusy` (errors.py), answered 503 with `Retry-After`, instead of hanging.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chatbots.db"
LOCK_TIMEOUT_SECONDS = 30.0
POOL_TIMEOUT_SECONDS = 30.0
UNMANAGED_TRANSACTIONS = "chatbots_unmanaged_transactions"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson for JSON columns (message metadata, engine config): stdlib json was a measurable share
# of the CPU of reading a page of history.
JSON_OPTIONS: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def create_engine(
    url: str,
    *,
    pool_size: int = 20,
    max_overflow: int = 0,
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    pool_timeout_seconds: float = POOL_TIMEOUT_SECONDS,
) -> AsyncEngine:
    options: dict[str, Any] = {
        **JSON_OPTIONS,
        # Connections kept open, not opened per burst: under load, overflow connections are
        # opened and closed all the time, and on SQLite each is a thread and four PRAGMAs.
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_seconds,
        # A statement's parameters (emails, password hashes, tokens) never reach an error
        # message, and so never a log line.
        "hide_parameters": True,
    }
    if is_sqlite(url):
        if make_url(url).database in (None, "", ":memory:"):  # one shared connection, no pool
            del options["pool_size"], options["max_overflow"], options["pool_timeout"]
        # Reset on return is `_on_reset` below: a rollback only if a transaction is open.
        engine = create_async_engine(url, pool_reset_on_return=None, **options)
        _configure_sqlite(engine, busy_timeout_ms=round(lock_timeout_seconds * 1000))
        return engine
    milliseconds = f"{round(lock_timeout_seconds * 1000)}ms"
    options["connect_args"] = {"server_settings": {"lock_timeout": milliseconds}}
    return create_async_engine(url, **options)


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that "begin" below decides how to begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(UNMANAGED_TRANSACTIONS):
            return  # reads in autocommit mode (`without_transactions`)
        # The one place a SQLite transaction begins. IMMEDIATE takes the write lock up front:
        # a deferred transaction that read first and writes later fails with
        # SQLITE_BUSY_SNAPSHOT under concurrency instead of waiting, so this is what makes
        # concurrent appends to one conversation queue up safely.
        begin_immediate(connection.connection.driver_connection)

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        # Every call on an aiosqlite connection is a hop to its thread and back: a connection
        # that holds no transaction (most: reads, committed units of work) goes back as it is.
        if state.asyncio_safe and record.driver_connection.in_transaction:
            dbapi_connection.rollback()


def begin_immediate(driver_connection: Any) -> None:
    """Sends `BEGIN IMMEDIATE` on an aiosqlite connection from SQLAlchemy's "begin" event: one
    hop to the connection's thread, where a statement through SQLAlchemy's cursor takes three
    (cursor, execute, close). Not public API (`sqlalchemy.util.await_only`, which SQLAlchemy's
    own async adapters use inside its greenlet): pinned by
    tests/integration/test_sqlalchemy_queries.py."""
    await_only(driver_connection.execute_fetchall("BEGIN IMMEDIATE"))


def without_transactions(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, on whose connections reads run in the driver's autocommit mode: no
    BEGIN/ROLLBACK round trips on PostgreSQL, no write lock on SQLite."""
    if engine.dialect.name == "sqlite":
        # The driver is in autocommit mode from the start (`_on_connect`): a flag for
        # `_on_begin` does it, without switching the isolation level at every checkout and
        # back at every return, each a hop to the connection's thread.
        return engine.execution_options(**{UNMANAGED_TRANSACTIONS: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")
