"""The distributed engine's schema: procrastinate's tables, and this engine's own, in PostgreSQL.

Apart from the queue because `chatbots migrate` runs it, not the API or a worker: procrastinate's
tables live in a PostgreSQL schema of their own, `procrastinate` (the pool's search_path), apart
from the alembic-managed `public` one, so migrations and autogenerate never see them. They are
created, or brought up to date with the migration files procrastinate ships, in one transaction
under an advisory lock; the level reached is recorded (`chatbots_schema_level`) so the next
migrate applies only newer files. The side table of last errors (`chatbots_job_errors`) is
created here too.
"""

from __future__ import annotations

from importlib import resources

import psycopg
from procrastinate.schema import SchemaManager
from psycopg import sql
from sqlalchemy.engine import make_url

SCHEMA = "procrastinate"
_SCHEMA_LOCK = 0x6A6F6273  # pg_advisory_xact_lock key: one `chatbots migrate` at a time

OWN_TABLES = """
CREATE TABLE IF NOT EXISTS chatbots_job_errors (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    error text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS chatbots_schema_level (
    engine text PRIMARY KEY,
    applied_through text NOT NULL
);
"""


def libpq_conninfo(database_url: str) -> str:
    """The service's SQLAlchemy URL (`postgresql+asyncpg://...`) as libpq reads it."""
    url = make_url(database_url)
    query = dict(url.query)
    if "ssl" in query:  # asyncpg's name for libpq's sslmode
        query["sslmode"] = query.pop("ssl")
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def _migration_names() -> list[str]:
    folder = resources.files("procrastinate.sql") / "migrations"
    return sorted(p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql"))


def pending_migrations(applied_through: str, available: list[str] | None = None) -> list[str]:
    """procrastinate's migration files newer than the level recorded at the last migrate."""
    return [name for name in (available or _migration_names()) if name > applied_through]


async def create_distributed_schema(database_url: str) -> str:
    """procrastinate's schema in its own PostgreSQL schema, created or brought up to date with
    the migrations procrastinate ships, in one transaction: what `chatbots migrate` runs."""
    latest = _migration_names()[-1]
    connect = psycopg.AsyncConnection.connect(libpq_conninfo(database_url))
    async with await connect as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(SCHEMA)))
        cursor = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cursor.fetchone()
        if not (row and row[0]):
            await conn.execute(SchemaManager.get_schema().encode())
            await conn.execute(OWN_TABLES.encode())
            done = f"created, at {latest}"
        else:
            await conn.execute(OWN_TABLES.encode())
            cursor = await conn.execute(
                "SELECT applied_through FROM chatbots_schema_level WHERE engine = 'procrastinate'"
            )
            level = await cursor.fetchone()
            pending = pending_migrations(level[0]) if level else []
            folder = resources.files("procrastinate.sql") / "migrations"
            for name in pending:
                await conn.execute((folder / f"{name}.sql").read_text().encode())
            done = f"migrated through {latest}" if pending else f"up to date, at {latest}"
        await conn.execute(
            "INSERT INTO chatbots_schema_level (engine, applied_through) "
            "VALUES ('procrastinate', %s) ON CONFLICT (engine) "
            "DO UPDATE SET applied_through = EXCLUDED.applied_through",
            (latest,),
        )
    return done
