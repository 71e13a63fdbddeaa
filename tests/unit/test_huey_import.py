"""The embedded job engine loads huey without the redis and psycopg storages it never uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import sys
import adapters.jobs.embedded
assert "redis" not in sys.modules and "psycopg" not in sys.modules, sorted(sys.modules)
import redis, psycopg  # still importable afterwards, for whoever needs them
from huey.storage import SqliteStorage
assert SqliteStorage is not None
print("ok")
"""


def test_huey_loads_without_its_optional_backends() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
