"""The bench's phases, in order: start stacks, probe, warm up, interleaved rounds, overload,
the Argon2 check, cost growth; then the report. Servers are stopped whatever happens."""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import cases as catalogue
from bench.cases import Case
from bench.growth import GrowthResult, run_growth
from bench.measure import Argon2Result, CaseResult, Measurement, measure, probe
from bench.progress import elapsed, say
from bench.report import BenchReport
from bench.servers import REPO_ROOT, can_pin, server_python, settle, stop_all, uvicorn_flags
from bench.stacks import ApiSetup, ApiStack, FloorStack, RawStack, Stack, StackError
from bench.wrk import LoadSpec, WrkError, WrkRun, ensure_wrk, wrk_version

ARGON2_LOGIN_CONNECTIONS = 20


@dataclass(frozen=True)
class Options:
    duration: int = 5
    rounds: int = 3
    warmup: int = 1
    connections: int = 32
    overload: tuple[int, ...] = (64, 256)
    only: tuple[str, ...] | None = None
    skip_growth: bool = False
    skip_overload: bool = False
    skip_argon2: bool = False
    growth_posts: int = 20
    post_conversations: int = 200
    # `make bench` must end within 10 minutes: optional work that would overrun is skipped.
    time_budget: int = 570
    output: Path = REPO_ROOT / "bench" / "results.json"

    @property
    def recovery_seconds(self) -> int:
        return max(2, self.duration // 2)


def _stack_for(name: str, workdir: Path, options: Options) -> Stack:
    if name == "raw":
        return RawStack(workdir)
    kind, db = name.split("-", 1)
    if kind == "floor":
        return FloorStack(workdir, db)
    return ApiStack(workdir, db, ApiSetup(post_conversations=options.post_conversations))


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "wrk": wrk_version(),
        "uvicorn": importlib.metadata.version("uvicorn"),
        "uvicorn_flags": uvicorn_flags(),
        "server_python": server_python(),
        "pinned": "server taskset -c 0, wrk taskset -c 1" if can_pin() else "not pinned",
        "git_commit": commit or None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.cases: list[Case] = catalogue.select(options.only)
        self.results = {case.name: CaseResult(case) for case in self.cases}
        self.workdir = Path(tempfile.mkdtemp(prefix="chatbots-bench-"))
        names = list(dict.fromkeys(case.stack for case in self.cases))
        self.stacks = {name: _stack_for(name, self.workdir, options) for name in names}
        self.loads: dict[str, LoadSpec] = {}
        self.argon2: list[Argon2Result] = []
        self.growth: list[GrowthResult] = []

    # ------------------------------------------------------------ phases

    def start_stacks(self) -> None:
        # In parallel: importing our app and migrating take most of the set-up, and one CPU
        # would sit idle if the stacks started one after the other. Nothing is measured yet.
        with ThreadPoolExecutor(max_workers=len(self.stacks) or 1) as pool:
            list(pool.map(self._start_stack, self.stacks.values()))

    def _start_stack(self, stack: Stack) -> None:
        say(f"starting {stack.name}")
        try:
            stack.start()
        except Exception as error:
            # One stack failing (e.g. our routes not there yet) leaves the others to measure.
            self._fail_stack(stack, str(error))
            with contextlib.suppress(Exception):
                stack.stop()
            return
        say(f"{stack.name} ready on {stack.running.base_url} (pid {stack.running.pid})")

    def probe_cases(self) -> None:
        for result in self._available():
            stack = self.stacks[result.case.stack]
            try:
                load = result.case.load(stack)
            except (StackError, OSError, IndexError) as error:
                self._unavailable(result, str(error))
                continue
            problem = probe(stack.running, load)
            if problem:
                self._unavailable(result, problem)
            else:
                self.loads[result.case.name] = load

    def warm_up(self) -> None:
        for result in self._available():
            self._run(result, self.options.connections, self.options.warmup, record=False)
        for stack in self.stacks.values():
            if stack.server is not None and stack.server.alive():
                stack.idle_rss_kib = stack.server.rss_kib()

    def rounds(self) -> None:
        for number in range(1, self.options.rounds + 1):
            say(f"round {number}/{self.options.rounds}")
            for result in self._available():
                measurement = self._run(result, self.options.connections, self.options.duration)
                if measurement is None:
                    continue
                result.rounds.append(measurement)
                self.stacks[result.case.stack].note_loaded_rss()
                w = measurement.wrk
                say(
                    f"  {result.case.name:<15}{w.requests_per_second:>10,.1f} req/s  "
                    f"p50 {w.p50_ms:7.2f} ms  p99 {w.p99_ms:7.2f} ms  "
                    f"cpu {measurement.cpu_us_per_request:7.0f} us/req  errors {w.errors}"
                )

    def overload(self) -> None:
        for result in self._available():
            if not result.rounds:
                continue
            for connections in self.options.overload:
                measurement = self._run(result, connections, self.options.duration)
                if measurement is not None:
                    result.overload[connections] = measurement
            # Deliberately not from idle: how fast the server is again right after the burst.
            result.recovery = self._run(
                result, self.options.connections, self.options.recovery_seconds, from_idle=False
            )
            after = result.recovery.wrk.p50_ms if result.recovery else math.nan
            say(
                f"  {result.case.name:<15}errors "
                + ", ".join(f"@{c}: {m.wrk.errors}" for c, m in result.overload.items())
                + f"; p50 after the burst {after:.2f} ms (normal {result.p50_ms:.2f} ms)"
            )

    def argon2_check(self) -> None:
        for stack in self.stacks.values():
            bots = self.results.get(f"bots-{stack.db}")
            if not isinstance(stack, ApiStack) or bots is None or bots.case.name not in self.loads:
                continue
            self.argon2.append(self._argon2(stack, self.loads[bots.case.name]))

    def _argon2(self, stack: ApiStack, bots_load: LoadSpec) -> Argon2Result:
        result = Argon2Result(stack.name)
        fixture = stack.fixture
        form = urlencode({"username": fixture.email, "password": fixture.password})
        login = LoadSpec("POST", "/api/v1/auth/token", "login.lua", (form,))
        seconds = self.options.duration
        # The logins start first and end last, so the whole measured run is under login load.
        logins = WrkRun(stack.running.base_url, login, ARGON2_LOGIN_CONNECTIONS, seconds + 2)
        self._settle()
        try:
            logins.start()
            time.sleep(1)
            result.bots = measure(stack.running, bots_load, self.options.connections, seconds)
            result.logins = logins.wait()
        except (WrkError, StackError) as error:
            result.error = str(error)
        finally:
            logins.stop()
        if result.bots:
            say(
                f"  {stack.name}: bots p99 {result.bots.wrk.p99_ms:.1f} ms during logins "
                f"({result.logins.requests_per_second if result.logins else 0:.1f} logins/s)"
            )
        return result

    def cost_growth(self) -> None:
        """PostgreSQL first and always; SQLite only if it should end within the time budget."""
        last_took: float | None = None
        for stack in self.stacks.values():
            if not (isinstance(stack, ApiStack) and stack.server and self._has_ours(stack)):
                continue
            budget = self.options.time_budget
            if last_took is not None and elapsed() + last_took > budget:
                reason = f"skipped: would end past the {budget} s time budget (--time-budget)"
                say(f"cost growth on {stack.name} {reason}")
                self.growth.append(GrowthResult(stack.name, error=reason))
                continue
            say(f"cost growth on {stack.name}")
            started = time.monotonic()
            self._settle()
            self.growth.append(run_growth(stack, self.options.growth_posts))
            last_took = time.monotonic() - started

    def stop(self) -> None:
        for stack in self.stacks.values():
            try:
                stack.stop()
            except Exception as error:  # keep stopping the others
                say(f"stopping {stack.name}: {error}")
        stop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def _available(self) -> list[CaseResult]:
        return [r for r in self.results.values() if r.unavailable is None]

    def _has_ours(self, stack: Stack) -> bool:
        return any(r.case.ours and r.case.stack == stack.name for r in self._available())

    def _fail_stack(self, stack: Stack, reason: str) -> None:
        say(f"{stack.name} unavailable: {reason}")
        for result in self.results.values():
            if result.case.stack == stack.name:
                result.unavailable = reason.splitlines()[0] if reason else "failed to start"

    def _unavailable(self, result: CaseResult, reason: str) -> None:
        say(f"{result.case.name} unavailable: {reason}")
        result.unavailable = reason

    def _settle(self) -> None:
        servers = [s.server for s in self.stacks.values() if s.server is not None]
        waited = settle(servers)
        if waited > 1:
            say(f"  waited {waited:.1f} s for the servers to finish queued requests")

    def _run(
        self,
        result: CaseResult,
        connections: int,
        seconds: float,
        *,
        record: bool = True,
        from_idle: bool = True,
    ) -> Measurement | None:
        stack = self.stacks[result.case.stack]
        if from_idle:
            self._settle()
        try:
            return measure(stack.running, self.loads[result.case.name], connections, seconds)
        except StackError as error:
            self._unavailable(result, str(error).splitlines()[0])
        except WrkError as error:
            if record:
                result.failures.append(f"@{connections}: {error}")
            say(f"  {result.case.name} @{connections}: {error}")
        return None

    def report(self) -> BenchReport:
        settings = {k: v for k, v in asdict(self.options).items() if k != "output"}
        return BenchReport(
            machine=machine_info(),
            settings=settings,
            cases=list(self.results.values()),
            stacks=list(self.stacks.values()),
            argon2=self.argon2,
            growth=self.growth,
        )


def run(options: Options) -> int:
    ensure_wrk()
    bench = Bench(options)
    say(
        f"bench: {len(bench.cases)} case(s): {', '.join(c.name for c in bench.cases)}; "
        f"{options.rounds} round(s) x {options.duration} s @{options.connections}"
        + ("" if can_pin() else " (fewer than 2 CPUs: not pinned)")
    )
    try:
        bench.start_stacks()
        bench.probe_cases()
        say("warm-up")
        bench.warm_up()
        bench.rounds()
        if not options.skip_overload and options.overload:
            say("overload: " + ", ".join(f"@{c}" for c in options.overload) + ", then recovery")
            bench.overload()
        if not options.skip_argon2:
            bench.argon2_check()
        if not options.skip_growth:
            bench.cost_growth()
        report = bench.report()
    finally:
        bench.stop()
    print(report.render(), flush=True)
    report.write(options.output)
    say(f"done in {elapsed():.0f} s; results in {options.output}")
    unavailable = [r for r in report.cases if r.unavailable or r.failures]
    return 1 if unavailable else 0
