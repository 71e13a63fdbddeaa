"""Job engines behind `application.jobs.JobQueue`, one contract suite for all
(tests/contract/test_jobs.py):

- `embedded.EmbeddedJobs`: huey on a SQLite file of its own, worked by threads inside the API
  process (or `chatbots worker`); the default with the default SQLite database.
- `distributed.DistributedJobs`: procrastinate on PostgreSQL, worked by `chatbots worker`
  processes that scale apart from the API.
- `memory.InMemoryJobs`: the same behaviour in process memory, for tests (`run_due()` runs what
  is due without a worker).

This package's `__init__` imports neither huey nor procrastinate: the composition root imports
the one engine it selects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from application.jobs import (
    ERROR_TEXT_LIMIT,
    JobPayload,
    JobPayloadNotJson,
    JobQueue,
)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker works, the same knobs for every engine (settings: `CHATBOTS_JOBS_*`)."""

    concurrency: int = 4
    poll_interval: float = 1.0  # seconds between looks at an idle queue (and at due retries)
    lease: float = 30.0  # a running job whose worker was silent this long is run again
    grace: float = 30.0  # on stop, running jobs get this long to finish, then are interrupted
    retention: timedelta = timedelta(days=7)  # finished jobs are forgotten after it

    @property
    def heartbeat(self) -> float:
        return self.lease / 3


class JobEngine(JobQueue, Protocol):
    async def start(self) -> None:
        """Work jobs in this process from now on (a second call does nothing)."""
        ...

    async def stop(self) -> None:
        """Stop working: running jobs get the grace period to finish, then are interrupted and
        queued again; queued jobs stay queued, durably on the embedded and distributed engines."""
        ...

    async def aclose(self) -> None:
        """Stop, then release connections and threads."""
        ...


def json_payload(payload: Mapping[str, Any] | None) -> JobPayload:
    """The payload as the handler will see it, whatever the engine: a JSON round trip."""
    try:
        value = json.loads(json.dumps(dict(payload or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise JobPayloadNotJson(f"the job payload is not JSON: {error}") from None
    if not isinstance(value, dict):  # pragma: no cover - dict() above guarantees it
        raise JobPayloadNotJson("the job payload must be a JSON object")
    return value


def first_run_at(
    now: datetime, delay: timedelta | None, run_at: datetime | None
) -> datetime | None:
    """When the first attempt may start (aware UTC), None for at once."""
    if delay is not None and run_at is not None:
        raise ValueError("give a delay or a run_at, not both")
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        return run_at.astimezone(UTC) if run_at > now else None
    if delay is not None and delay > timedelta(0):
        return now + delay
    return None


def error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:ERROR_TEXT_LIMIT]


# The last error of an attempt that a stopping worker cut short, and of one whose worker was lost.
INTERRUPTED = "interrupted: the worker stopped while it ran"


def worker_lost(attempt: int) -> str:
    return f"the worker was lost while it ran attempt {attempt}"


def minute_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def from_epoch(seconds: float | None) -> datetime | None:
    if seconds is None or math.isnan(seconds):
        return None
    return datetime.fromtimestamp(seconds, UTC)
