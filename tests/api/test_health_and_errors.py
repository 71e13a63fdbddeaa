"""Health probes and the problem+json contract for errors no route handles itself."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from adapters.sqlalchemy.database import create_engine
from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from tests.api.conftest import client_for, make_settings

pytestmark = pytest.mark.integration


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def _readyz(database_url: str) -> httpx.Response:
    app = create_app(build_container(make_settings(database_url)))
    async for client in client_for(app):
        return await client.get("/readyz")
    raise AssertionError("unreachable")


async def test_readyz_503_when_not_migrated(tmp_path: Path) -> None:
    response = await _readyz(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503


async def test_readyz_503_when_behind_the_head(database_url: str, sql_engine: object) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            head = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = 'old'"))
        response = await _readyz(database_url)
        assert response.status_code == 503
        assert "old" in response.json()["detail"]
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
        await engine.dispose()


async def test_readyz_503_when_the_database_is_unreachable() -> None:
    response = await _readyz("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()) >= {"type", "title", "status", "detail"}


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


async def test_unexpected_errors_hide_the_stack_trace(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


async def test_every_route_documents_its_models(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            assert operation.get("description"), f"{label} has no description"
            errors = [code for code in operation["responses"] if code[0] in "45"]
            assert errors or path == "/healthz", f"{label} documents no error answers"
            success = [code for code in operation["responses"] if code[0] == "2"]
            assert success, f"{label} documents no success answer"


async def test_the_openai_surface_answers_errors_in_openai_s_envelope(
    client: httpx.AsyncClient,
) -> None:
    unauthenticated = await client.get("/v1/models")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert unauthenticated.json()["error"]["type"] == "authentication_error"
    too_large = await client.post(
        "/v1/chat/completions",
        content=b"x" * (3 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "request_too_large"
