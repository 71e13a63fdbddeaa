"""One measured load run: wrk's figures plus the server's CPU time and memory around it."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import wrk
from bench.cases import Case
from bench.servers import CLOCK_TICKS_PER_SECOND, ServerProcess
from bench.stacks import StackError
from bench.wrk import LoadSpec, WrkResult, finite


@dataclass(frozen=True)
class Measurement:
    connections: int
    wrk: WrkResult
    cpu_us_per_request: float
    rss_kib: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            **self.wrk.as_dict(),
            "cpu_us_per_request": finite(self.cpu_us_per_request, 1),
            "rss_mb": round(self.rss_kib / 1024, 1),
        }


def measure(server: ServerProcess, load: LoadSpec, connections: int, seconds: float) -> Measurement:
    """Runs wrk once and charges the server's CPU time during the run to its requests."""
    before = server.cpu_ticks()
    result = wrk.run(server.base_url, load, connections, seconds)
    after = server.cpu_ticks()
    if not server.alive():
        raise StackError(f"{server.name} exited during the run:\n{server.log_tail()}")
    cpu_us = (after - before) / CLOCK_TICKS_PER_SECOND * 1e6
    per_request = cpu_us / result.requests if result.requests else math.nan
    return Measurement(connections, result, per_request, server.rss_kib())


def probe(server: ServerProcess, load: LoadSpec) -> str | None:
    """Sends one request of the case's shape; returns why the case cannot run, or None."""
    try:
        response = httpx.request(
            load.method,
            server.base_url + load.path,
            headers=load.headers,
            content=load.body,
            timeout=30.0,
        )
    except httpx.HTTPError as error:
        return f"{load.method} {load.path} failed: {error!r}"
    if 200 <= response.status_code < 300:
        return None
    snippet = response.text[:200].replace("\n", " ")
    hint = " (route not implemented yet?)" if response.status_code == 404 else ""
    return f"{load.method} {load.path} answered {response.status_code}{hint}: {snippet}"


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


@dataclass
class CaseResult:
    case: Case
    unavailable: str | None = None
    rounds: list[Measurement] = field(default_factory=list)
    overload: dict[int, Measurement] = field(default_factory=dict)
    recovery: Measurement | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return bool(self.rounds)

    @property
    def requests_per_second(self) -> float:
        return _median([m.wrk.requests_per_second for m in self.rounds])

    @property
    def p50_ms(self) -> float:
        return _median([m.wrk.p50_ms for m in self.rounds])

    @property
    def p99_ms(self) -> float:
        return _median([m.wrk.p99_ms for m in self.rounds])

    @property
    def cpu_us_per_request(self) -> float:
        return _median([m.cpu_us_per_request for m in self.rounds])

    @property
    def errors(self) -> int:
        return sum(m.wrk.errors for m in self.rounds)

    @property
    def recovered_ratio(self) -> float:
        """p50 of the 32-connection run right after the bursts over the normal p50."""
        if self.recovery is None or not self.rounds:
            return math.nan
        return self.recovery.wrk.p50_ms / self.p50_ms if self.p50_ms else math.nan


@dataclass
class Argon2Result:
    """GET /api/v1/bots/{id} measured while 20 connections log in (Argon2id) non-stop."""

    stack: str
    bots: Measurement | None = None
    logins: WrkResult | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bots": self.bots.as_dict() if self.bots else None,
            "logins": self.logins.as_dict() if self.logins else None,
            "error": self.error,
        }
