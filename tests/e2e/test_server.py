"""The real server over real sockets: what `make run` gives a newcomer."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.databases import sqlite_database
from tests.e2e.conftest import run_server

pytestmark = pytest.mark.e2e


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200


def test_the_server_does_not_say_what_it_runs(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert "server" not in response.headers  # `chatbots serve` turns uvicorn's header off
    assert response.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_and_openapi_are_served(http: httpx.Client) -> None:
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    spec = http.get("/openapi.json").json()
    assert spec["info"]["title"] == "chatbots"


def test_errors_are_problem_json_over_the_wire(http: httpx.Client) -> None:
    response = http.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_the_readme_walkthrough_register_token_me_refresh(http: httpx.Client) -> None:
    import uuid

    email = f"walk-{uuid.uuid4().hex[:8]}@example.com"
    registered = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "correct horse battery", "display_name": "Walker"},
    )
    assert registered.status_code == 201
    tokens = http.post(
        "/api/v1/auth/token", data={"username": email, "password": "correct horse battery"}
    ).json()
    me = http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["email"] == email
    rotated = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]


def test_the_example_bot_answers_a_newcomer(http: httpx.Client) -> None:
    import uuid

    from application.seeding import EXAMPLE_BOT_ID

    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "correct horse battery", "display_name": "New"},
    )
    token = http.post(
        "/api/v1/auth/token", data={"username": email, "password": "correct horse battery"}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    conversation = http.post(
        f"/api/v1/bots/{EXAMPLE_BOT_ID}/conversations", json={}, headers=auth
    ).json()
    reply = http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "How do I create a bot?"},
        headers=auth,
    ).json()["reply"]
    assert reply["metadata"]["fallback"] is False
    assert "POST /api/v1/bots" in reply["content"]


def test_make_run_logs_each_request_without_secrets(tmp_path: Path) -> None:
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "serve" in run_recipe
    assert "--access-log" in run_recipe
    with (
        sqlite_database(tmp_path) as url,
        run_server(url, tmp_path / "server.log", extra_args=("--access-log",)) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        http.get("/api/v1/users/me", headers={"Authorization": "Bearer secret-token-123"})
        http.post("/api/v1/auth/token", data={"username": "a@x.io", "password": "hunter2 hunter2"})
        time.sleep(0.2)  # the access log is written after the answer
        log = server.log()
    assert '"GET /api/v1/users/me HTTP/1.1" 401' in log
    assert '"POST /api/v1/auth/token HTTP/1.1" 401' in log
    assert "secret-token-123" not in log
    assert "hunter2" not in log
