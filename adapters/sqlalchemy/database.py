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


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson for JSON columns (message metadata, engine config): stdlib json was ~6% of the CPU of
# reading a page of history.
JSON_OPTIONS: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def create_engine(url: str, *, pool_size: int = 20, max_overflow: int = 0) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, **JSON_OPTIONS)
        _configure_sqlite(engine)
        return engine
    options: dict[str, Any] = {
        **JSON_OPTIONS,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        # Waiting for a connection is bounded: past it the caller gets an error, not a hang.
        "pool_timeout": 30,
    }
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
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # read-only work: each statement reads a consistent snapshot on its own
        # IMMEDIATE takes the write lock up front. A deferred transaction that read first and
        # writes later fails with SQLITE_BUSY_SNAPSHOT under concurrency instead of waiting,
        # so this is what makes concurrent appends to one conversation queue up safely.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
