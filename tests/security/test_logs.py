"""No log line carries a statement's parameters or what a database error quotes of a row."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.database import create_engine
from application.identity import IdentityService
from tests.api.conftest import make_app

pytestmark = pytest.mark.security

SECRET_EMAIL = "leaky-secret@example.com"
SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0c2FsdA$c2VjcmV0aGFzaHZhbHVl"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """A handler on the root logger, as `make run` has; the app puts its filter on it."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    root = logging.getLogger()
    root.addHandler(handler)
    yield output
    root.removeHandler(handler)


async def _duplicate_insert(engine: sa.ext.asyncio.AsyncEngine) -> None:
    insert = sa.text(
        "INSERT INTO users (id, email, display_name, password_hash, role, is_active,"
        " created_at, updated_at) VALUES (:id, :email, 'x', :hash, 'member', true,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    values = {"email": SECRET_EMAIL, "hash": SECRET_HASH}
    async with engine.begin() as connection:
        await connection.execute(insert, {"id": "00000000-0000-4000-8000-000000000001", **values})
        await connection.execute(insert, {"id": "00000000-0000-4000-8000-000000000002", **values})


async def test_a_database_error_is_logged_without_its_values(
    database_url: str,
    sql_engine: object,
    log_output: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app: FastAPI = make_app(database_url)
    engine = app.state.container.engine()

    async def failing_register(self: IdentityService, *args: object, **kwargs: object) -> None:
        await _duplicate_insert(engine)  # an error nothing translates: a 500

    monkeypatch.setattr(IdentityService, "register", failing_register)
    # As a server does: the error is answered, not raised into the client.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "a@example.com", "password": "long enough", "display_name": "A"},
        )
    assert response.status_code == 500
    assert SECRET_EMAIL not in response.text
    logged = log_output.getvalue()
    assert "unhandled error on POST /api/v1/auth/register" in logged
    assert "IntegrityError" in logged  # the class and the frames are kept, for the operator
    assert SECRET_EMAIL not in logged
    assert SECRET_HASH not in logged
    assert "c2VjcmV0" not in logged


async def test_statement_parameters_never_reach_an_error_message(
    database_url: str, sql_engine: object
) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(IntegrityError) as raised:
            await _duplicate_insert(engine)
    finally:
        await engine.dispose()
    assert SECRET_HASH not in str(raised.value)
    assert "parameters hidden" in str(raised.value)


async def test_the_running_server_logs_requests_without_secrets(
    client: httpx.AsyncClient, log_output: io.StringIO
) -> None:
    await client.post(
        "/api/v1/auth/register",
        json={"email": SECRET_EMAIL, "password": "hunter2 hunter2", "display_name": "A"},
    )
    await client.post(
        "/api/v1/auth/token", data={"username": SECRET_EMAIL, "password": "hunter2 hunter2"}
    )
    assert "hunter2" not in log_output.getvalue()
