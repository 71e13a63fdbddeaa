"""The ASGI app in-process (httpx + ASGITransport), wired to a real database per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from dependency_injector import providers
from fastapi import FastAPI

from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings
from tests.fakes import cheap_hasher

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


def make_app(database_url: str, **overrides: object) -> FastAPI:
    container = build_container(make_settings(database_url, **overrides))
    container.password_hasher.override(providers.Singleton(cheap_hasher))
    return create_app(container)


@pytest.fixture
async def app(database_url: str, sql_engine: object) -> FastAPI:
    return make_app(database_url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(app):
        yield c


class ApiUser:
    """A registered, signed-in user for API tests."""

    def __init__(self, client: httpx.AsyncClient, email: str, tokens: dict[str, object]) -> None:
        self.client = client
        self.email = email
        self.tokens = tokens

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


PASSWORD = "correct horse battery"


async def sign_up(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> ApiUser:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "display_name": email.split("@")[0]},
    )
    assert response.status_code == 201, response.text
    return await sign_in(client, email, password)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> ApiUser:
    response = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return ApiUser(client, email, response.json())


async def make_admin(app: FastAPI, email: str) -> None:
    """Promote through the use case layer, as `chatbots create-admin` would."""
    from domain.users import Role

    uow_factory = app.state.container.uow_factory()
    async with uow_factory() as uow:
        user = await uow.users.get_by_email(email)
        user.assign_role(Role.ADMIN, user.updated_at)
        await uow.commit()
