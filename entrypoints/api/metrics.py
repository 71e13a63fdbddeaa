"""Prometheus metrics: the families `GET /metrics` shows, and the cheap calls that feed them.

Labels stay bounded: a request is labelled by its route *template* (`/api/v1/bots/{bot_id}`,
never the path it was called with), every path that matches no route shares one label, and a
method outside the standard ones is `other`. Each app has its own registry, so several apps in
one process (tests) never collide.

Several worker processes: prometheus-client's multiprocess mode. With `PROMETHEUS_MULTIPROC_DIR`
set in the environment before the process starts, every worker writes its values to files in
that directory and `/metrics`, whichever worker answers it, adds up all of them. `chatbots
serve` creates the directory and clears what a previous run left there.
"""

from __future__ import annotations

import os
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIRECTORY_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH: Final = "/metrics"
UNMATCHED_ROUTE: Final = "unmatched"
OTHER_METHOD: Final = "other"
STANDARD_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
# Up to a minute: a streamed answer is one request, measured to its last byte.
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ENGINE_BUCKETS: Final = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
UPSTREAM_FAILURE_KINDS: Final = ("failed", "timeout")


class ServiceMetrics:
    """The service's metric families; also the exchange observer (entrypoints/api/exchange.py).

    A request costs a dictionary look-up and two increments: the labelled children are kept
    per (method, route, status), since prometheus-client's `labels()` validates and locks on
    every call.
    """

    def __init__(self, multiprocess_directory: str | None = None) -> None:
        self.multiprocess_directory = multiprocess_directory
        self.registry = CollectorRegistry()
        self._request_seconds = Histogram(
            "chatbots_http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte, by route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            "chatbots_http_requests",
            "Answered requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._reply_seconds = Histogram(
            "chatbots_reply_engine_duration_seconds",
            "Time a reply engine took to produce a stored reply (its `latency_ms`), by engine.",
            ["engine"],
            buckets=ENGINE_BUCKETS,
            registry=self.registry,
        )
        self._upstream_failures = Counter(
            "chatbots_upstream_failures",
            "Replies an engine's upstream failed to produce: `failed` (answered 502) or "
            "`timeout` (answered 504).",
            ["kind"],
            registry=self.registry,
        )
        self._per_request: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._per_engine: dict[str, Any] = {}
        self._per_failure = {
            kind: self._upstream_failures.labels(kind) for kind in UPSTREAM_FAILURE_KINDS
        }

    @classmethod
    def from_environment(cls) -> ServiceMetrics:
        return cls(os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE) or None)

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in STANDARD_METHODS:
            method = OTHER_METHOD
        key = (method, route, status)
        children = self._per_request.get(key)
        if children is None:
            children = (
                self._request_seconds.labels(method, route),
                self._requests.labels(method, route, str(status)),
            )
            self._per_request[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def reply_produced(self, engine: str, seconds: float) -> None:
        child = self._per_engine.get(engine)
        if child is None:
            child = self._per_engine[engine] = self._reply_seconds.labels(engine)
        child.observe(seconds)

    def upstream_failed(self, kind: str) -> None:
        self._per_failure[kind].inc()

    def exposition(self) -> bytes:
        """The text format; in multiprocess mode, the sum over every worker's files."""
        if self.multiprocess_directory is None:
            return generate_latest(self.registry)
        gathered = CollectorRegistry()
        MultiProcessCollector(gathered, path=self.multiprocess_directory)  # type: ignore[no-untyped-call]
        return generate_latest(gathered)


def install_metrics_route(app: FastAPI, metrics: ServiceMetrics) -> None:
    """`GET /metrics`, outside `/api/v1` and the OpenAPI document."""

    @app.get(METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
