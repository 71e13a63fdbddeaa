"""Run alembic programmatically, so `chatbots migrate` needs no alembic.ini on the path."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from adapters.sqlalchemy.readiness import MIGRATIONS_DIR


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it from a thread when an event loop is running (env.py starts its own)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
