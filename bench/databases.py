"""Throw-away databases: a fresh PostgreSQL database per server, a temporary SQLite file."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

# The maintenance connection used to create and drop the bench databases (trust auth locally).
DEFAULT_POSTGRES_DSN = os.environ.get(
    "BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class PostgresDatabase:
    """A database named `<prefix>_<pid>_<random>`, created here and dropped here, nothing else."""

    def __init__(self, prefix: str, admin_dsn: str = DEFAULT_POSTGRES_DSN) -> None:
        self.name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        self._admin_dsn = admin_dsn
        self._created = False

    @property
    def dsn(self) -> str:
        """libpq/asyncpg form."""
        parts = urlsplit(self._admin_dsn)
        return urlunsplit((parts.scheme, parts.netloc, "/" + self.name, parts.query, ""))

    @property
    def sqlalchemy_url(self) -> str:
        return "postgresql+asyncpg" + self.dsn[self.dsn.index(":") :]

    def create(self) -> None:
        asyncio.run(_execute(self._admin_dsn, f'CREATE DATABASE "{self.name}"'))
        self._created = True

    def drop(self) -> None:
        if not self._created:
            return
        # FORCE (PostgreSQL 13+) ends the connections a stopped-too-late server may have left.
        asyncio.run(
            _execute(self._admin_dsn, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        )
        self._created = False


class SqliteDatabase:
    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.db"

    @property
    def sqlalchemy_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.path}"

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
