"""Readiness probe: the database answers, and its schema is at the head of our migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ports import Readiness

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PROBE_TIMEOUT_SECONDS = 2.0


def migration_head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


class SqlAlchemySchemaInspector:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._head = migration_head()  # read once: the code's head does not move while it runs

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
