"""Property-based fuzzing of the whole OpenAPI surface: bad input never gets a 5xx, and every
answer matches the schema the OpenAPI document declares for it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.databases import postgres_database, sqlite_database
from tests.e2e.conftest import run_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_no_generated_request_gets_a_server_error(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # PostgreSQL refuses text SQLite stores (NUL), so the fuzzer runs against both.
    if backend == "postgresql":
        request.getfixturevalue("postgresql_url")  # skips or fails the same way as elsewhere
    database = sqlite_database(tmp_path) if backend == "sqlite" else postgres_database()
    # A server of its own: fuzzed sign-ins would otherwise throttle the other tests' logins.
    with (
        database as url,
        run_server(
            url,
            tmp_path / "server.log",
            {
                "CHATBOTS_LOGIN_MAX_FAILURES": "1000000",
                "CHATBOTS_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
                "CHATBOTS_REGISTER_MAX_PER_ADDRESS": "1000000",
            },
        ) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        _fuzz(server.base_url, http, server.log)


def _fuzz(base_url: str, http: httpx.Client, log: Callable[[], str]) -> None:
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "correct horse battery", "display_name": "Fuzz"},
    ).raise_for_status()
    token = http.post(
        "/api/v1/auth/token", data={"username": email, "password": "correct horse battery"}
    ).json()["access_token"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "8",
            "--seed",
            "1",
            "--max-response-time",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "unhandled error" not in log()
