"""The README's walkthrough runs as written, in order, against a live server.

The convention (stated at the top of README.md): a fenced block whose info string is `sh` or
`python` is meant to be run; `console` (installs, serves until stopped, needs an upstream LLM) and
`text` (diagrams, synopses, output) blocks are not. Every block must carry one of the four.

The `sh` and `python` blocks run in one bash session (`set -euo pipefail`), as a reader pasting
them into one terminal would; each `python` block is saved to a file and run with this venv's
python from that shell, so it sees what the shell exported. `BASE` points at a fresh server, and
`curl` fails on an HTTP error, so a block whose request is refused fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.databases import sqlite_database
from tests.e2e.conftest import E2E_SECRET, run_server

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN = {"sh", "python"}
NOT_RUN = {"console", "text"}
OPENING = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
DEFAULT_SERVER = "127.0.0.1:8000"
# The only places a runnable block may name the default address: the defaults of `BASE`.
BASE_DEFAULTS = (
    "${BASE:-http://127.0.0.1:8000}",
    'os.environ.get("BASE", "http://127.0.0.1:8000")',
)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    info: str
    code: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block, in order, its content de-indented as far as its fence is."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        assert j < len(lines), f"README.md:{i + 1}: the block is never closed"
        blocks.append(Block(i + 1, opening["info"], "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def runnable_blocks() -> list[Block]:
    return [b for b in readme_blocks(README.read_text()) if b.info in RUN]


def test_every_block_says_whether_it_runs() -> None:
    blocks = readme_blocks(README.read_text())
    unlabelled = [
        f"README.md:{b.line} ({b.info or 'no info string'})"
        for b in blocks
        if b.info not in RUN | NOT_RUN
    ]
    assert not unlabelled, f"fence these as sh/python (run) or console/text (not run): {unlabelled}"
    runnable = [b for b in blocks if b.info in RUN]
    assert {b.info for b in runnable} == RUN


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: f"line{b.line}")
def test_runnable_blocks_run_nothing_that_never_ends_or_needs_an_upstream(block: Block) -> None:
    code = block.code
    for default in BASE_DEFAULTS:
        code = code.replace(default, "")
    assert DEFAULT_SERVER not in code, f"README.md:{block.line}: use $BASE / os.environ['BASE']"
    if block.info == "sh":
        commands = [line.split("#")[0] for line in code.splitlines()]
        for forbidden in (r"\bmake\b", r"\bchatbots serve\b", r"\buvicorn\b", r"\bollama\b"):
            hits = [c for c in commands if re.search(forbidden, c)]
            assert not hits, f"README.md:{block.line} runs {hits}: fence it as console"


def _walkthrough(blocks: list[Block], directory: Path) -> str:
    parts = [
        "set -Eeuo pipefail",
        "trap 'echo \"README.md: the block at line $README_LINE failed\" >&2' ERR",
        # An HTTP error answer fails the command, as a refused request must fail the test.
        'curl() { command curl --fail-with-body "$@"; }',
    ]
    for block in blocks:
        parts.append(f"README_LINE={block.line}")
        parts.append(f"echo '::: README.md line {block.line} ({block.info})'")
        if block.info == "sh":
            parts.append(block.code)
        else:
            script = directory / f"readme-line-{block.line}.py"
            script.write_text(block.code)
            parts.append(f'"$README_PYTHON" {script}')
            parts.append("echo")
    return "\n".join(parts) + "\n"


def test_the_readme_walkthrough_runs_against_a_live_server(tmp_path: Path) -> None:
    blocks = runnable_blocks()
    workdir = tmp_path / "clone"  # stands for the repository root, without touching it
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    script = tmp_path / "walkthrough.sh"
    script.write_text(_walkthrough(blocks, tmp_path))
    with (
        sqlite_database(tmp_path) as url,
        run_server(url, tmp_path / "server.log") as server,
    ):
        env = {
            **os.environ,
            "BASE": server.base_url,
            # The command line (create-admin) works on the server's database, as with `make run`.
            "CHATBOTS_DATABASE_URL": url,
            "CHATBOTS_JWT_SECRET": E2E_SECRET,
            "CHATBOTS_ENV": "test",
            "README_PYTHON": sys.executable,
        }
        for name in ("TOKEN", "BOT", "AUTH", "CONV", "REFRESH", "PASSWORD"):
            env.pop(name, None)
        result = subprocess.run(
            ["bash", str(script)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        log = server.log()
    out = result.stdout
    assert result.returncode == 0, f"{out}\n--- stderr\n{result.stderr}\n--- server\n{log}"
    assert out.count("9 to 5, Monday to Friday.") >= 2, out  # blocking, then streamed
    assert "event: done" in out, out
    assert "event: error" not in out, out
    assert "admin root@example.com created" in out, out
    assert "c0ffee00-0000-4000-8000-000000000001" in out, out  # /v1/models via `openai`
    assert "ReplyStored" in out, out  # the in-process block
    assert "Traceback" not in out + result.stderr, result.stderr
