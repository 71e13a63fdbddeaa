"""The real server: `chatbots serve` in a subprocess on a free loopback port, over each database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.databases import postgres_database, sqlite_database

STARTUP_TIMEOUT_SECONDS = 60
E2E_SECRET = "e2e-signing-key-that-is-long-enough-for-hs256-tokens"


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    database_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_server(
    database_url: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    """Start the server the way `make run` does and wait until /readyz says 200."""
    port = free_port()
    env = {
        **os.environ,
        "CHATBOTS_DATABASE_URL": database_url,
        "CHATBOTS_JWT_SECRET": E2E_SECRET,
        "CHATBOTS_ENV": "test",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "entrypoints.cli", "serve", "--port", str(port), *extra_args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", database_url, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{server.log()}")
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server per database for the whole e2e session; tests make their own users and bots."""
    directory = tmp_path_factory.mktemp(f"e2e-{request.param}")
    if request.param == "sqlite":
        database = sqlite_database(directory)
    else:
        request.getfixturevalue("postgresql_url")  # skips or fails the same way as elsewhere
        database = postgres_database()
    with database as url, run_server(url, directory / "server.log") as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client
