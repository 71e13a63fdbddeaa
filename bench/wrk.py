"""wrk: installing it, running it pinned and bounded in time, and reading its --latency report."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import LOAD_CPU, pinned

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
# wrk's default 2 s socket timeout would count a slow-but-served overload request as an error;
# 5 s still flags a server that stalls, which is what the overload check is after.
REQUEST_TIMEOUT = "5s"
# On top of the run's duration: wrk start-up, connection set-up, the final in-flight requests.
GRACE_SECONDS = 30
# One wrk thread drives >100k req/s from a core of its own, far above any Python server here.
THREADS = 1


class WrkError(RuntimeError):
    pass


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get when missing (the bench machine runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise WrkError("wrk is not installed and this is not root: run `apt-get install -y wrk`")
    print("wrk is missing: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        # A fresh image has empty package lists: refresh once, then try again.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        subprocess.run(install, env=env, check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise WrkError("could not install wrk with apt-get; install it and run again")
    return found


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else "unknown"


@dataclass(frozen=True)
class LoadSpec:
    """What wrk sends: a Lua script from bench/scripts and its arguments.

    `method`, `path`, `headers` and `body` describe one request of the same shape, which the
    harness sends once with httpx before loading, so a missing route is a clear message, not a
    table full of errors.
    """

    method: str
    path: str
    script: str
    args: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    timeouts: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": finite(self.p50_ms, 3),
            "p99_ms": finite(self.p99_ms, 3),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "timeouts": self.timeouts,
            "errors": self.errors,
        }


def finite(value: float, digits: int) -> float | None:
    """JSON has no NaN or Infinity: both become null (the request count tells which)."""
    return round(value, digits) if math.isfinite(value) else None


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


def _duration_ms(text: str) -> float:
    match = re.fullmatch(_DURATION, text.strip())
    if not match:
        return math.nan
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(output: str) -> WrkResult:
    """Reads the plain-text report of `wrk --latency`."""
    percentiles = {
        int(m.group(1)): _duration_ms(m.group(2))
        for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    if total is None:
        raise WrkError("unreadable wrk output:\n" + output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    connect, read, write, timeout = (int(v) for v in socket.groups()) if socket else (0, 0, 0, 0)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = int(total.group(1))
    return WrkResult(
        requests=requests,
        seconds=_duration_ms(total.group(2) + total.group(3)) / 1000.0,
        requests_per_second=float(rate.group(1)) if rate else 0.0,
        # No reply at all (a server still draining a burst) is infinitely slow, not the
        # "0.00us" wrk prints: latency targets must then read MISS.
        p50_ms=math.inf if requests == 0 else percentiles.get(50, math.nan),
        p99_ms=math.inf if requests == 0 else percentiles.get(99, math.nan),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=connect + read + write + timeout,
        timeouts=timeout,
    )


class WrkRun:
    """One bounded wrk run; `start()` then `wait()`, so two can overlap (the Argon2 check)."""

    def __init__(self, base_url: str, load: LoadSpec, connections: int, seconds: float) -> None:
        self.seconds = seconds
        self.command = pinned(
            [
                "wrk",
                f"--threads={min(THREADS, connections)}",
                f"--connections={connections}",
                f"--duration={max(1, round(seconds))}s",
                f"--timeout={REQUEST_TIMEOUT}",
                "--latency",
                f"--script={SCRIPTS_DIR / load.script}",
                base_url + load.path,
                "--",
                *load.args,
            ],
            LOAD_CPU,
        )
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> WrkRun:
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def wait(self) -> WrkResult:
        process = self._process
        if process is None:
            raise WrkError("wrk was not started")
        try:
            stdout, stderr = process.communicate(timeout=self.seconds + GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # our own child, by its PID
            process.communicate()
            raise WrkError(f"wrk overran its {self.seconds:.0f} s run and was stopped") from None
        finally:
            self._process = None
        if process.returncode != 0:
            raise WrkError(f"wrk failed ({process.returncode}): {stderr.strip() or stdout.strip()}")
        return parse(stdout)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._process = None


def run(base_url: str, load: LoadSpec, connections: int, seconds: float) -> WrkResult:
    return WrkRun(base_url, load, connections, seconds).start().wait()
