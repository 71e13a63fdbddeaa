"""Readiness probe: the database answers, and its schema is at the head of our migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import Readiness

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision. Kept as a constant so a serving worker never imports alembic
# (megabytes of resident memory, bench/RESULTS.md); a test fails when it differs from alembic's
# own head.
SCHEMA_HEAD = "0002"
PROBE_TIMEOUT_SECONDS = 2.0


class SqlAlchemySchemaInspector:
    def __init__(self, engine: AsyncEngine, head: str = SCHEMA_HEAD) -> None:
        self._engine = engine
        self._head = head

    async def check(self) -> Readiness:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                async with self._engine.connect() as connection:
                    version = await connection.scalar(
                        sa.text("SELECT version_num FROM alembic_version")
                    )
        except TimeoutError:
            return Readiness(False, "the database did not answer in time")
        except (SQLAlchemyError, OSError):
            return Readiness(False, "the database is unreachable or not migrated")
        if version != self._head:
            return Readiness(False, f"the schema is at {version}, the code expects {self._head}")
        return Readiness(True, "ok")
