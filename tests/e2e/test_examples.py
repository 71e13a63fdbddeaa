"""The documented in-process example runs as documented: on memory, on a migrated SQLite file
again and again (it reuses its user and bot), and on an unmigrated one it says what to do."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import sqlite_database

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "in_process.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CHATBOTS_DATABASE_URL"}
    return {**env, **extra}


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _run_example(env: dict[str, str], cwd: Path = ROOT) -> str:
    result = _run([sys.executable, "examples/in_process.py"], env, cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _answers(out: str) -> None:
    assert "We are open 9 to 5" in out
    assert "Yes, to every EU country." in out


def test_in_process_example_on_memory() -> None:
    _answers(_run_example(_env()))  # memory:// is the default


def test_in_process_example_on_a_migrated_sqlite_file_twice(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        first = _run_example(_env(CHATBOTS_DATABASE_URL=url))
        second = _run_example(_env(CHATBOTS_DATABASE_URL=url))  # the user and bot exist now
    _answers(first)
    _answers(second)
    # The second run reused the bot: its knowledge was not imported twice, so the answers match.
    assert first.replace("\n", " ") == second.replace("\n", " ")


def test_in_process_example_on_an_unmigrated_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}"
    result = _run([sys.executable, "examples/in_process.py"], _env(CHATBOTS_DATABASE_URL=url), ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"the database at {url} is not ready" in result.stderr
    assert "not migrated" in result.stderr
    assert "chatbots migrate" in result.stderr
    assert result.stdout == ""


def _docstring_commands() -> list[str]:
    """The indented command lines of the example's docstring, without their comments."""
    docstring = ast.get_docstring(ast.parse(EXAMPLE.read_text())) or ""
    commands = []
    for line in docstring.splitlines():
        if line.startswith("    ") and line.strip() and not line.strip().startswith("#"):
            commands.append(line.split("#")[0].strip())
    return commands


def test_in_process_example_runs_as_its_docstring_says(tmp_path: Path) -> None:
    """The docstring's commands, in a copy of the repository root's layout: its `.venv` is this
    virtualenv and `examples/` the real one, so the SQLite file lands in the temporary folder.
    Run twice: the second pass migrates nothing and reuses the user and the bot."""
    commands = _docstring_commands()
    assert any("chatbots migrate" in c for c in commands), commands
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    script = "set -euo pipefail\n" + "\n".join(commands * 2) + "\n"
    result = _run(["bash", "-c", script], _env(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # memory, then SQLite; again: the export still holds, so SQLite twice more
    assert result.stdout.count("We are open 9 to 5") == 4
    assert (tmp_path / "example.db").exists()
