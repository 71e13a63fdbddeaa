"""The printed tables, the targets with PASS/MISS, and bench/results.json."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.growth import HISTORY_LEVELS, KNOWLEDGE_LEVELS, GrowthResult
from bench.measure import Argon2Result, CaseResult
from bench.stacks import Stack
from bench.wrk import finite

# The targets. Ratios are to the floor of the same database, PostgreSQL being the one
# the service is tuned for.
RATIO_TARGETS = {"bots-pg": 0.55, "history-pg": 0.40, "post-pg": 0.20}
P99_TARGET_MS = 50.0
# "Recovered": right after the 256-connection burst, p50 at 32 connections within 1.5x normal.
RECOVERY_MAX_RATIO = 1.5
HISTORY_GROWTH_MAX_RATIO = 1.2
ENGINE_TARGET_MS = 5.0
IDLE_RSS_TARGET_MB = 120.0
ARGON2_P99_TARGET_MS = 100.0


def _fmt(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    return "no reply" if math.isinf(value) else f"{value:,.{digits}f}"


def _times(ratio: float) -> str:
    return _fmt(ratio, 2) + ("x" if math.isfinite(ratio) else "")


@dataclass(frozen=True)
class TargetCheck:
    subject: str
    goal: str
    value: float
    passed: bool | None  # None: not measured

    @property
    def status(self) -> str:
        return "n/a " if self.passed is None else ("PASS" if self.passed else "MISS")

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "goal": self.goal,
            "value": finite(self.value, 3),
            "status": self.status.strip(),
        }


def _check(subject: str, goal: str, value: float, ok: Callable[[float], bool]) -> TargetCheck:
    return TargetCheck(subject, goal, value, None if math.isnan(value) else ok(value))


@dataclass
class BenchReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    cases: list[CaseResult]
    stacks: list[Stack]
    argon2: list[Argon2Result] = field(default_factory=list)
    growth: list[GrowthResult] = field(default_factory=list)

    def _by_name(self, name: str | None) -> CaseResult | None:
        return next((r for r in self.cases if r.case.name == name and r.measured), None)

    def ratio_to_raw(self, result: CaseResult) -> float:
        raw = self._by_name("raw")
        if raw is None or not result.measured:
            return math.nan
        return result.requests_per_second / raw.requests_per_second

    def ratio_to_floor(self, result: CaseResult) -> float:
        floor = self._by_name(result.case.floor_case)
        if floor is None or not result.measured:
            return math.nan
        return result.requests_per_second / floor.requests_per_second

    def targets(self) -> list[TargetCheck]:
        checks = [
            _check(name, f">= {goal:.2f}x floor-pg req/s", self._ratio(name), _at_least(goal))
            for name, goal in RATIO_TARGETS.items()
        ]
        for result in self.cases:
            if not result.case.ours or result.unavailable:
                continue
            name = result.case.name
            overload_errors = (
                float(sum(m.wrk.errors for m in result.overload.values()))
                if result.overload
                else math.nan
            )
            checks += [
                _check(
                    name,
                    f"p99 < {P99_TARGET_MS:.0f} ms @32",
                    result.p99_ms,
                    lambda v: v < P99_TARGET_MS,
                ),
                _check(name, "0 errors @64 and @256", overload_errors, lambda v: v == 0),
                _check(
                    name,
                    f"recovered: p50 after burst <= {RECOVERY_MAX_RATIO}x normal",
                    result.recovered_ratio,
                    lambda v: v <= RECOVERY_MAX_RATIO,
                ),
            ]
        for growth in self.growth:
            checks += [
                _check(
                    growth.stack,
                    f"reply @{HISTORY_LEVELS[-1]:,} history <= "
                    f"{HISTORY_GROWTH_MAX_RATIO}x @{HISTORY_LEVELS[0]}",
                    _history_ratio(growth),
                    lambda v: v <= HISTORY_GROWTH_MAX_RATIO,
                ),
                _check(
                    growth.stack,
                    f"engine time @{KNOWLEDGE_LEVELS[-1]:,} entries <= {ENGINE_TARGET_MS:.0f} ms",
                    _engine_at_max(growth),
                    lambda v: v <= ENGINE_TARGET_MS,
                ),
            ]
        for stack in self.stacks:
            if stack.name.startswith("api-"):
                idle = stack.idle_rss_kib / 1024 if stack.idle_rss_kib else math.nan
                checks.append(
                    _check(
                        stack.name,
                        f"idle RSS <= {IDLE_RSS_TARGET_MB:.0f} MB",
                        idle,
                        lambda v: v <= IDLE_RSS_TARGET_MB,
                    )
                )
        for argon2 in self.argon2:
            p99 = argon2.bots.wrk.p99_ms if argon2.bots else math.nan
            checks.append(
                _check(
                    argon2.stack,
                    f"bots GET p99 < {ARGON2_P99_TARGET_MS:.0f} ms during 20 logins",
                    p99,
                    lambda v: v < ARGON2_P99_TARGET_MS,
                )
            )
        return checks

    def _ratio(self, name: str) -> float:
        result = self._by_name(name)
        return self.ratio_to_floor(result) if result else math.nan

    # ---------------------------------------------------------------- text

    def render(self) -> str:
        rounds = self.settings["rounds"]
        connections = self.settings["connections"]
        lines = [
            "",
            f"Throughput @{connections} connections, median of {rounds} interleaved round(s), "
            f"{self.settings['duration']} s each",
            f"{'case':<15}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
            f"{'errors':>8}{'x raw':>8}{'x floor':>9}",
        ]
        notes = []
        for result in self.cases:
            if not result.measured:
                notes.append(f"  {result.case.name}: {result.unavailable or 'not measured'}")
                lines.append(f"{result.case.name:<15}{'unavailable':>10}")
                continue
            lines.append(
                f"{result.case.name:<15}{_fmt(result.requests_per_second):>10}"
                f"{_fmt(result.p50_ms, 2):>9}{_fmt(result.p99_ms, 2):>9}"
                f"{_fmt(result.cpu_us_per_request, 0):>12}{result.errors:>8}"
                f"{_fmt(self.ratio_to_raw(result), 2):>8}{_fmt(self.ratio_to_floor(result), 2):>9}"
            )
            notes += [f"  {result.case.name}: {failure}" for failure in result.failures]
        if notes:
            lines += ["", "Notes:", *notes]
        lines += self._render_overload() + self._render_memory()
        lines += self._render_argon2() + self._render_growth() + self._render_targets()
        return "\n".join(lines)

    def _render_overload(self) -> list[str]:
        measured = [r for r in self.cases if r.overload or r.recovery]
        if not measured:
            return []
        levels = sorted({c for r in measured for c in r.overload})
        header = "".join(f"{f'err@{c}':>9}{f'p99@{c}':>10}" for c in levels)
        lines = [
            "",
            "Overload: one run per level, then a short run @32 right after the burst",
            f"{'case':<15}{header}{'p50 after':>11}{'normal':>9}{'recovered':>11}",
        ]
        for result in measured:
            cells = ""
            for level in levels:
                m = result.overload.get(level)
                cells += (
                    f"{m.wrk.errors:>9}{_fmt(m.wrk.p99_ms, 1):>10}" if m else f"{'-':>9}{'-':>10}"
                )
            after = result.recovery.wrk.p50_ms if result.recovery else math.nan
            lines.append(
                f"{result.case.name:<15}{cells}{_fmt(after, 2):>11}{_fmt(result.p50_ms, 2):>9}"
                f"{_times(result.recovered_ratio):>11}"
            )
        return lines

    def _render_memory(self) -> list[str]:
        lines = ["", "Worker memory (VmRSS): idle after start-up + warm-up, loaded after @32 runs"]
        lines.append(f"{'server':<15}{'idle MB':>10}{'loaded MB':>11}")
        for stack in self.stacks:
            idle = stack.idle_rss_kib / 1024 if stack.idle_rss_kib else math.nan
            loaded = stack.loaded_rss_kib / 1024 if stack.loaded_rss_kib else math.nan
            lines.append(f"{stack.name:<15}{_fmt(idle):>10}{_fmt(loaded):>11}")
        return lines

    def _render_argon2(self) -> list[str]:
        if not self.argon2:
            return []
        lines = ["", "Argon2 check: GET /api/v1/bots/{id} @32 while 20 connections log in"]
        for result in self.argon2:
            if result.error or result.bots is None:
                lines.append(f"  {result.stack}: {result.error or 'not measured'}")
                continue
            bots, logins = result.bots.wrk, result.logins
            login_text = (
                f"logins {logins.requests_per_second:.1f}/s, {logins.non_2xx} non-2xx, "
                f"{logins.socket_errors} socket errors ({logins.timeouts} timeouts)"
                if logins
                else "logins: -"
            )
            lines.append(
                f"  {result.stack}: {bots.requests_per_second:,.0f} req/s, "
                f"p50 {bots.p50_ms:.2f} ms, p99 {bots.p99_ms:.2f} ms, {bots.errors} errors; "
                + login_text
            )
        return lines

    def _render_growth(self) -> list[str]:
        if not self.growth:
            return []
        lines = ["", "Cost growth: single sequential posts (median), our API"]
        for growth in self.growth:
            if growth.error:
                lines.append(f"  {growth.stack}: stopped: {growth.error}")
            for point in growth.history:
                lines.append(
                    f"  {growth.stack} history {point.level:>7,} msgs: reply "
                    f"{_fmt(point.median_end_to_end_ms, 2)} ms end-to-end, engine "
                    f"{_fmt(point.median_engine_ms, 2)} ms ({point.engine_source})"
                )
            for point in growth.knowledge:
                lines.append(
                    f"  {growth.stack} knowledge {point.level:>6,} entries: engine "
                    f"{_fmt(point.median_engine_ms, 2)} ms ({point.engine_source}), reply "
                    f"{_fmt(point.median_end_to_end_ms, 2)} ms, first reply "
                    f"{_fmt(point.first_reply_ms, 0)} ms, bulk load {point.setup_seconds:.1f} s"
                )
        return lines

    def _render_targets(self) -> list[str]:
        lines = ["", "Targets"]
        for check in self.targets():
            lines.append(
                f"  {check.status}  {check.subject:<15} {check.goal:<52} {_fmt(check.value, 2)}"
            )
        return lines

    # ---------------------------------------------------------------- json

    def to_json(self) -> dict[str, Any]:
        cases: dict[str, Any] = {}
        for result in self.cases:
            cases[result.case.name] = {
                "kind": result.case.kind,
                "db": result.case.db,
                "ours": result.case.ours,
                "unavailable": result.unavailable,
                "failures": result.failures,
                "median": {
                    "requests_per_second": finite(result.requests_per_second, 1),
                    "p50_ms": finite(result.p50_ms, 3),
                    "p99_ms": finite(result.p99_ms, 3),
                    "cpu_us_per_request": finite(result.cpu_us_per_request, 1),
                    "errors": result.errors,
                },
                "ratio_to_raw": finite(self.ratio_to_raw(result), 3),
                "ratio_to_floor": finite(self.ratio_to_floor(result), 3),
                "rounds": [m.as_dict() for m in result.rounds],
                "overload": {str(c): m.as_dict() for c, m in result.overload.items()},
                "recovery": result.recovery.as_dict() if result.recovery else None,
                "recovered_ratio": finite(result.recovered_ratio, 3),
            }
        return {
            "machine": self.machine,
            "settings": self.settings,
            "cases": cases,
            "memory": {
                stack.name: {
                    "idle_rss_mb": round(stack.idle_rss_kib / 1024, 1)
                    if stack.idle_rss_kib
                    else None,
                    "loaded_rss_mb": round(stack.loaded_rss_kib / 1024, 1)
                    if stack.loaded_rss_kib
                    else None,
                }
                for stack in self.stacks
            },
            "argon2": {result.stack: result.as_dict() for result in self.argon2},
            "growth": {growth.stack: growth.as_dict() for growth in self.growth},
            "targets": [check.as_dict() for check in self.targets()],
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _at_least(goal: float) -> Callable[[float], bool]:
    return lambda value: value >= goal


def _history_ratio(growth: GrowthResult) -> float:
    points = {p.level: p.median_end_to_end_ms for p in growth.history}
    low, high = points.get(HISTORY_LEVELS[0]), points.get(HISTORY_LEVELS[-1])
    return high / low if low and high else math.nan


def _engine_at_max(growth: GrowthResult) -> float:
    top = [p for p in growth.knowledge if p.level == KNOWLEDGE_LEVELS[-1]]
    return top[0].median_engine_ms if top else math.nan
