"""A database that is not migrated yet never stops the process: start-up goes on (the example
bot is skipped), /readyz says 503, and requests answer a clear 503 instead of a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import client_for, make_app

pytestmark = pytest.mark.integration


async def test_an_unmigrated_sqlite_file_serves_clear_503s(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    async for client in client_for(make_app(url, seed_example_bot=True)):
        assert (await client.get("/readyz")).status_code == 503
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": "a@example.com", "password": "long enough", "display_name": "A"},
        )
        assert response.status_code == 503
        assert response.json()["type"] == "/problems/store-not-ready"
        assert "chatbots migrate" in response.json()["detail"]
