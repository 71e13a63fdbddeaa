"""Operations on the real server (`chatbots serve`): uvicorn's own log lines as JSON with the
request id, and `/metrics` adding up several workers in prometheus-client's multiprocess mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.databases import sqlite_database
from tests.e2e.conftest import run_server

pytestmark = pytest.mark.e2e


def test_json_logs_cover_uvicorn_s_lines_and_carry_the_request_id(tmp_path: Path) -> None:
    with (
        sqlite_database(tmp_path) as url,
        run_server(
            url,
            tmp_path / "server.log",
            extra_env={"CHATBOTS_LOG_FORMAT": "json"},
            extra_args=("--access-log",),
        ) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        answer = http.get("/no/such/route", headers={"X-Request-Id": "e2e-json-1"})
        assert answer.headers["x-request-id"] == "e2e-json-1"
        time.sleep(0.3)  # the access line is written as the answer goes
        log = server.log()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, loggers
    started = next(e for e in entries if e["message"].startswith("Started server process"))
    assert started["request_id"] is None
    access = next(e for e in entries if e["request_id"] == "e2e-json-1")
    assert access["logger"] == "uvicorn.access"
    assert '"GET /no/such/route HTTP/1.1" 404' in access["message"]
    assert {"time", "level", "logger", "message", "request_id"} <= set(access)


def _healthz_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chatbots_http_requests_total" and sample.labels["route"] == "/healthz"
    )


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_99999999.db").write_bytes(b"left by a previous run")
    with (
        sqlite_database(tmp_path) as url,
        run_server(
            url,
            tmp_path / "server.log",
            extra_env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
            extra_args=("--workers", "2"),
        ) as server,
    ):
        sent = 40
        for _ in range(sent):  # a new connection each: the kernel spreads them over workers
            assert httpx.get(f"{server.base_url}/healthz").status_code == 200
        answers = [httpx.get(f"{server.base_url}/metrics") for _ in range(6)]
        files = sorted(path.name for path in directory.iterdir())
    assert "counter_99999999.db" not in files  # cleared before the workers started
    pids = {name.rsplit("_", 1)[1] for name in files if name.startswith("counter_")}
    assert len(pids) == 2, files  # both workers wrote their counts
    assert all(_healthz_count(answer.text) == sent for answer in answers)
