"""The documented in-process example runs as documented, on memory and on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import sqlite_database

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _run_example(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "in_process.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_in_process_example_on_memory() -> None:
    out = _run_example({"CHATBOTS_DATABASE_URL": "memory://"})
    assert "We are open 9 to 5" in out
    assert "Yes, to every EU country." in out


def test_in_process_example_on_sqlite(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        out = _run_example({"CHATBOTS_DATABASE_URL": url})
    assert "We are open 9 to 5" in out
