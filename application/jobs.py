"""Background jobs: the port a use case enqueues through, and the job kinds the application
declares (name, async handler, retry policy; periodic schedules).

Delivery guarantee: **at least once**. A job whose handler returned is never run again; a job
whose handler raised is retried with exponential backoff until its kind's `RetryPolicy` gives up
(max attempts or max age), then recorded as failed with the error's text. A job whose worker
died while running it (a crash, a kill, a lost connection) is run again once the worker is known
to be gone, and that lost run counts as an attempt. So a handler can run more than once for one
job (never twice at the same time): **handlers must be idempotent** (check before acting, upsert,
carry an idempotency key to the outside world). Payloads are JSON; a handler receives exactly
what `json.loads(json.dumps(payload))` gives.

Engines (adapters/jobs/): embedded (huey on a SQLite file, in the API process), distributed
(procrastinate on PostgreSQL, `chatbots worker` processes) and an in-memory one for tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

JobPayload = dict[str, Any]
JobHandler = Callable[[JobPayload], Awaitable[None]]
ERROR_TEXT_LIMIT = 2000


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for its first attempt, or for a retry
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # its last attempt raised, or its worker was lost on the last attempt


@dataclass(frozen=True)
class JobStatus:
    """What a use case can show about a job: where it is, how many attempts started, and the
    text of the last error (kept after a successful retry too, for the record)."""

    id: str
    kind: str
    state: JobState
    attempts: int
    last_error: str | None = None


class JobError(Exception):
    """Base of the job errors raised by `JobQueue`."""


class UnknownJobKind(JobError, LookupError):
    pass


class JobPayloadNotJson(JobError, ValueError):
    pass


class JobQueueUnavailable(JobError):
    """The engine's store cannot be reached, or its schema is missing (`chatbots migrate`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the n-th retry waits `first_delay * factor ** (n - 1)`, at most
    `max_delay`. No attempt starts after `max_attempts`, nor once the job is older than
    `max_age` (counted from its enqueueing), so a webhook can be retried for about a day:
    `RetryPolicy(max_attempts=40, first_delay=timedelta(seconds=30), max_delay=timedelta(hours=1),
    max_age=timedelta(days=1))`."""

    max_attempts: int = 5
    first_delay: timedelta = timedelta(seconds=10)
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def retry_delay(self, attempts: int, age: timedelta) -> timedelta | None:
        """How long to wait before the next attempt after `attempts` have failed, the job being
        `age` old; None when the policy gives up."""
        if attempts >= self.max_attempts:
            return None
        seconds = self.first_delay.total_seconds() * self.factor ** max(attempts - 1, 0)
        delay = min(timedelta(seconds=seconds), self.max_delay)
        if self.max_age is not None and age + delay > self.max_age:
            return None
        return delay


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: JobHandler
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class PeriodicJob:
    """Enqueue `kind` on a five-field cron schedule in UTC ("17 * * * *": hourly at :17). Each
    engine enqueues it once per tick, whatever the number of workers."""

    kind: str
    cron: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.cron}"


class JobRegistry:
    """Every job kind the application declares, and its periodic schedules. Features declare
    their own registry; the composition root merges them (`JobRegistry.merge`)."""

    def __init__(self, kinds: Iterable[JobKind] = (), periodic: Iterable[PeriodicJob] = ()):
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"job kind {kind.name!r} is declared twice")
            self._kinds[kind.name] = kind
        self.periodic: tuple[PeriodicJob, ...] = tuple(periodic)
        for schedule in self.periodic:
            if schedule.kind not in self._kinds:
                raise ValueError(f"periodic job of an undeclared kind {schedule.kind!r}")
            if len(schedule.cron.split()) != 5:
                raise ValueError(f"cron {schedule.cron!r}: five fields expected")

    @classmethod
    def merge(cls, *registries: JobRegistry) -> JobRegistry:
        return cls(
            [kind for registry in registries for kind in registry],
            [schedule for registry in registries for schedule in registry.periodic],
        )

    def __getitem__(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownJobKind(f"no job kind {name!r} is declared") from None

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())


class JobQueue(Protocol):
    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: timedelta | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
    ) -> str:
        """Queue a job of a declared kind; returns its id. `delay` or `run_at` (aware) hold it
        back. With a `dedup_key`, while a job with the same key waits for its first attempt no
        other is queued: its id is returned instead. Raises `UnknownJobKind`,
        `JobPayloadNotJson`, `JobQueueUnavailable`."""
        ...

    async def status(self, job_id: str) -> JobStatus | None:
        """None for an id the engine does not know (never queued, or removed after the
        engine's retention period)."""
        ...
