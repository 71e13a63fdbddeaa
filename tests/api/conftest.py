"""The ASGI app in-process (httpx + ASGITransport), wired to a real database per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings

TEST_SECRET = "test-signing-key-that-is-long-enough-for-hs256"


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "env": "test",
        "jwt_secret": TEST_SECRET,
        "seed_example_bot": False,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def app(database_url: str, sql_engine: object) -> FastAPI:
    return create_app(build_container(make_settings(database_url)))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(app):
        yield c
