"""The security tier reuses the API tier's in-process app over SQLite and PostgreSQL."""

from tests.api.conftest import app, client

__all__ = ["app", "client"]
