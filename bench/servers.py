"""Server processes the harness starts, pins to a CPU, watches and stops.

Only processes started here are ever signalled, by the PID Popen gave us (never by name), so a
developer's own `make run` or another benchmark on the same machine is left alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
# The server under test gets CPU 0 to itself and the load generator CPU 1: the two never compete
# for a core, so req/s measures the server and not the scheduler.
SERVER_CPU = 0
LOAD_CPU = 1
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
SETTLE_TIMEOUT_SECONDS = 60.0
SETTLE_WINDOW_SECONDS = 0.2
# At most 2 ticks (20 ms at the usual 100 Hz) of CPU in a 200 ms window counts as idle.
SETTLE_IDLE_TICKS = 2


class ServerError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    # The kernel picks an unused loopback port; the tiny window before the server binds it is
    # harmless here because nothing else on the machine grabs random high ports in between.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def can_pin() -> bool:
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def pinned(command: list[str], cpu: int) -> list[str]:
    """`command` run through `taskset -c cpu` (taskset execs, so the PID stays the program's)."""
    if not can_pin():
        return command
    return ["taskset", "-c", str(cpu), *command]


def uvicorn_flags() -> list[str]:
    """The one set of uvicorn flags every bench server runs with, so ratios compare like with like.

    `entrypoints.cli serve` leaves loop/http on "auto", which picks uvloop and httptools when they
    are installed: naming them explicitly here gives the bench apps the same stack.
    """
    flags = ["--workers", "1", "--no-access-log", "--log-level", "info"]
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    flags += ["--loop", "uvloop" if has_uvloop else "auto"]
    flags += ["--http", "httptools" if has_httptools else "auto"]
    return flags


def _stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # `comm` (field 2) may hold spaces and parentheses: everything after the last ")" is fixed.
    return data[data.rfind(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children = _children_map()
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def cpu_ticks(pid: int) -> int:
    """utime + stime of the process tree (all threads included), in clock ticks."""
    total = 0
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields is not None:
            # Fields 14 and 15 of /proc/<pid>/stat, counted from the state field (3) here.
            total += int(fields[11]) + int(fields[12])
    return total


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class ServerProcess:
    """One uvicorn server: started pinned, health-checked, measured through /proc, stopped."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    cwd: Path = REPO_ROOT
    health_path: str = "/healthz"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerError(f"{self.name} is not running")
        return self._process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl-C at the terminal reaches the harness only, which then
            # stops its servers in order instead of leaving half of them dying mid-request.
            self._process = subprocess.Popen(
                pinned(self.command, SERVER_CPU),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _RUNNING.append(self)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        url = self.base_url + self.health_path
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self._process.returncode} during start-up:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise ServerError(
            f"{self.name} did not answer {self.health_path} within {START_TIMEOUT_SECONDS:.0f} s:\n"
            + self.log_tail()
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cpu_ticks(self) -> int:
        return cpu_ticks(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)
        if process.poll() is not None:
            return
        # Remember the descendants before the parent goes: orphans would be re-parented to init
        # and lost from view. Our servers run one worker in-process, so this is usually empty.
        descendants = [pid for pid in process_tree(process.pid) if pid != process.pid]
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


_RUNNING: list[ServerProcess] = []


def stop_all() -> None:
    """Stops every server this harness started and has not stopped yet."""
    for server in list(reversed(_RUNNING)):
        server.stop()


def settle(servers: list[ServerProcess], timeout: float = SETTLE_TIMEOUT_SECONDS) -> float:
    """Waits until the servers use (almost) no CPU; returns the seconds waited.

    After wrk stops, a server still answers the requests already queued (a 256-connection burst
    on a slow route leaves seconds of work). Measuring the next case then would charge that work
    to whoever shares CPU 0, so every measured run starts from idle servers.
    """
    started = time.monotonic()
    live = [server for server in servers if server.alive()]
    while live:
        before = sum(server.cpu_ticks() for server in live)
        time.sleep(SETTLE_WINDOW_SECONDS)
        busy = sum(server.cpu_ticks() for server in live) - before
        if busy <= SETTLE_IDLE_TICKS or time.monotonic() - started > timeout:
            break
    return time.monotonic() - started


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The harness's environment minus inherited CHATBOTS_* settings, plus `extra`.

    Inherited settings (a developer's shell, CI) must not change what is measured; the repository
    root goes on PYTHONPATH so `bench.apps.*` and the service import from any working directory.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHATBOTS_")}
    python_path = [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env.update(extra)
    return env


def server_python() -> str:
    """The interpreter servers run under: `BENCH_SERVER_PYTHON` (what `make bench` sets: a
    virtualenv with the runtime requirements only), else this one.

    The test tools in the development virtualenv are not harmless to a measurement: libraries
    import what they find installed (dependency-injector imports werkzeug, ~2 MB of a worker's
    memory), and a deployed worker has none of them.
    """
    chosen = os.environ.get("BENCH_SERVER_PYTHON")
    # Absolute: servers run in a temporary working directory.
    return os.path.abspath(chosen) if chosen else sys.executable


def python_command(*args: str) -> list[str]:
    return [server_python(), *args]
