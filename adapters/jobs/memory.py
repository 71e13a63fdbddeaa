"""The job queue in process memory: the same contract as the real engines, for tests and
`memory://` runs. Nothing survives the process.

Other teams' unit tests can skip the worker: enqueue through the use case, then
`await jobs.run_due()` runs every job that is due, once, on the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.jobs import WorkerOptions, error_text, first_run_at, json_payload, minute_of
from adapters.jobs.cron import cron_matches
from application.jobs import JobPayload, JobRegistry, JobState, JobStatus

logger = logging.getLogger("chatbots.jobs")


@dataclass
class _Job:
    id: str
    kind: str
    payload: JobPayload
    enqueued_at: datetime
    run_at: datetime
    dedup_key: str | None
    state: JobState = JobState.QUEUED
    attempts: int = 0
    last_error: str | None = None
    finished_at: datetime | None = None


class InMemoryJobs:
    def __init__(self, registry: JobRegistry, options: WorkerOptions | None = None) -> None:
        self._registry = registry
        self._options = options or WorkerOptions()
        self._jobs: dict[str, _Job] = {}
        self._waiting_first: dict[str, str] = {}  # dedup key -> id of the job holding it
        self._running: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ticks_done: dict[str, datetime] = {}

    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: timedelta | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
    ) -> str:
        self._registry[kind]  # raises UnknownJobKind
        body = json_payload(payload)
        now = datetime.now(UTC)
        start = first_run_at(now, delay, run_at) or now
        if dedup_key is not None and dedup_key in self._waiting_first:
            return self._waiting_first[dedup_key]
        job = _Job(uuid.uuid4().hex, kind, body, now, start, dedup_key)
        self._jobs[job.id] = job
        if dedup_key is not None:
            self._waiting_first[dedup_key] = job.id
        self._wake.set()
        return job.id

    async def status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return JobStatus(job.id, job.kind, job.state, job.attempts, job.last_error)

    async def run_due(self) -> int:
        """Run every job due now to the end of its attempt (retries wait for their time);
        returns how many attempts ran."""
        due = self._claim_due(limit=None)
        await asyncio.gather(*(self._attempt(job) for job in due))
        return len(due)

    def _claim_due(self, limit: int | None) -> list[_Job]:
        now = datetime.now(UTC)
        due = sorted(
            (j for j in self._jobs.values() if j.state is JobState.QUEUED and j.run_at <= now),
            key=lambda j: j.run_at,
        )[:limit]
        for job in due:
            job.state = JobState.RUNNING
            job.attempts += 1
            if job.dedup_key is not None and self._waiting_first.get(job.dedup_key) == job.id:
                del self._waiting_first[job.dedup_key]
        return due

    async def _attempt(self, job: _Job) -> None:
        kind = self._registry[job.kind]
        try:
            await kind.handler(json_payload(job.payload))
        except asyncio.CancelledError:
            self._failed(job, "interrupted: the worker stopped", interrupted=True)
            raise
        except Exception as error:
            logger.warning("job %s (%s) attempt %d failed", job.id, job.kind, job.attempts)
            self._failed(job, error_text(error))
        else:
            job.state, job.finished_at = JobState.DONE, datetime.now(UTC)

    def _failed(self, job: _Job, error: str, *, interrupted: bool = False) -> None:
        now = datetime.now(UTC)
        job.last_error = error
        delay = self._registry[job.kind].retry.retry_delay(job.attempts, now - job.enqueued_at)
        if delay is None:
            job.state, job.finished_at = JobState.FAILED, now
        else:
            job.state, job.run_at = JobState.QUEUED, now + (timedelta(0) if interrupted else delay)
            self._wake.set()

    def _enqueue_periodic(self, now: datetime | None = None) -> None:
        minute = minute_of(now or datetime.now(UTC))
        for schedule in self._registry.periodic:
            if self._ticks_done.get(schedule.name) != minute and cron_matches(
                schedule.cron, minute
            ):
                self._ticks_done[schedule.name] = minute
                at = datetime.now(UTC)
                payload = json_payload(schedule.payload)
                job = _Job(uuid.uuid4().hex, schedule.kind, payload, at, at, None)
                self._jobs[job.id] = job
                self._wake.set()

    async def sweep(self) -> None:
        """What the worker does between jobs: forget jobs finished before the retention."""
        self._forget_finished()

    def _forget_finished(self) -> None:
        horizon = datetime.now(UTC) - self._options.retention
        for job_id in [
            j.id for j in self._jobs.values() if j.finished_at and j.finished_at < horizon
        ]:
            del self._jobs[job_id]

    async def _work(self) -> None:
        while True:
            self._enqueue_periodic()
            self._forget_finished()
            free = self._options.concurrency - len(self._running)
            for job in self._claim_due(limit=max(free, 0)):
                task = asyncio.create_task(self._attempt(job), name=f"job {job.kind}[{job.id}]")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._options.poll_interval)

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="in-memory job worker")

    async def stop(self) -> None:
        if self._worker is None:
            return
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        if self._running:
            _done, pending = await asyncio.wait(self._running, timeout=self._options.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        await self.stop()
