"""In CI an unreachable PostgreSQL fails the run; on a laptop it only skips those tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"


def _run_one_postgres_test(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CHATBOTS_TEST_POSTGRES_URL"] = UNREACHABLE
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-q",
            "tests/contract/test_unit_of_work.py::test_committed_user_round_trips",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ci_fails_when_postgres_is_unreachable() -> None:
    result = _run_one_postgres_test(ci=True)
    assert result.returncode != 0
    assert "PostgreSQL is required in CI" in result.stdout


def test_a_developer_machine_skips_instead() -> None:
    result = _run_one_postgres_test(ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
