"""`EmbeddedJobs`: the job port on huey, and the bridge from huey's threads to asyncio.

Apart from the records, leases and scheduler because this is the part that runs things: the
port (enqueue, status), the worker's life (huey's consumer in this process, without its signal
handlers), and one attempt of a job: huey's task hands the job's async handler to the service's
event loop and waits for it, renewing its lease, then records the outcome and retries it with
huey's `RetryTask` and the policy's backoff, or ends it as failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from adapters.jobs import (
    INTERRUPTED,
    WorkerOptions,
    error_text,
    first_run_at,
    from_epoch,
    json_payload,
)
from adapters.jobs.embedded.leases import Leases
from adapters.jobs.embedded.records import (
    QUEUE_NAME,
    JobRecord,
    JobRecords,
    huey_tables_present,
    retry_delay,
)
from adapters.jobs.embedded.scheduler import PeriodicJobs, PollingScheduler, forget_old
from adapters.jobs.huey_import import Consumer, RetryTask, SqliteHuey, SqliteStorage
from application.jobs import (
    JobHandler,
    JobPayload,
    JobQueueUnavailable,
    JobRegistry,
    JobState,
    JobStatus,
)

logger = logging.getLogger("chatbots.jobs")
T = TypeVar("T")

# huey names a task by its function's module and name, and stores that name with every queued
# entry: `adapters.jobs.embedded.run_job`, as when this engine was one module, so the entries
# (and scheduled retries) an earlier version left in the file still find their task.
TASK_MODULE = "adapters.jobs.embedded"


class _Consumer(Consumer):  # type: ignore[misc]
    """huey's consumer without its signal handlers: uvicorn or `chatbots worker` owns them."""

    def __init__(self, engine: EmbeddedJobs, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(engine.huey, **kwargs)

    def _create_scheduler(self) -> PollingScheduler:
        return PollingScheduler(
            self.engine, huey=self.huey, stop_flag=self.stop_flag, interval=1, periodic=True
        )

    def _set_signal_handlers(self) -> None:
        return None


class EmbeddedJobs:
    def __init__(
        self, registry: JobRegistry, path: str, options: WorkerOptions | None = None
    ) -> None:
        self.registry = registry
        self.path = path
        self.options = options or WorkerOptions()
        # results=False: handlers return nothing; the job records are the results.
        self.huey = SqliteHuey(QUEUE_NAME, filename=path, results=False, create_tables=False)
        self._run_job = self.huey.task(name="run_job")(_as_task(self._run))
        self._storage: SqliteStorage = self.huey.storage
        self._records = JobRecords(self._storage)
        self._leases = Leases(self._records, registry, self.options, self._schedule)
        self._periodic = PeriodicJobs(self._records, registry, self._enqueue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: _Consumer | None = None
        self._in_flight: set[concurrent.futures.Future[None]] = set()
        self._in_flight_lock = threading.Lock()
        self._schema_checked = False

    # --- the port ---------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: timedelta | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
    ) -> str:
        self.registry[kind]
        body = json_payload(payload)
        start = first_run_at(datetime.now(UTC), delay, run_at)
        return await self._in_thread(self._enqueue, kind, body, start, dedup_key)

    async def status(self, job_id: str) -> JobStatus | None:
        record = await self._in_thread(self._records.get, job_id)
        if record is None:
            return None
        return JobStatus(
            record.id, record.kind, JobState(record.state), record.attempts, record.last_error
        )

    # --- the worker -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._consumer is not None:
            return
        await self._in_thread(self._check_schema)
        self._loop = asyncio.get_running_loop()
        self._consumer = _Consumer(
            self,
            workers=self.options.concurrency,
            initial_delay=min(0.1, self.options.poll_interval),
            max_delay=self.options.poll_interval,
            shutdown_timeout=self.options.grace,
            check_worker_health=False,
        )
        self._consumer.start()

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        # Off the loop: the workers wait for handlers that run on it.
        await asyncio.to_thread(consumer.stop, True)
        with self._in_flight_lock:
            running = list(self._in_flight)
        for future in running:  # past the grace period: interrupted, queued again
            future.cancel()
        await asyncio.to_thread(_join, consumer, self.options.grace)

    async def aclose(self) -> None:
        await self.stop()
        self._storage.close()

    # --- in huey's threads ------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except sqlite3.Error as error:
            raise JobQueueUnavailable(f"the job store {self.path}: {error}") from error

    def _check_schema(self) -> None:
        if self._schema_checked:
            return
        if not huey_tables_present(self._storage, self.path):
            raise JobQueueUnavailable(
                f"the job store {self.path} is not set up: run `chatbots migrate`"
            )
        self._schema_checked = True

    def _schedule(self, job_id: str, run_at: float | None) -> None:
        eta = from_epoch(run_at)
        task = self._run_job.s(job_id, id=job_id, eta=eta)
        if eta is None:
            self.huey.enqueue(task)
        else:
            self.huey.add_schedule(task)

    def _enqueue(
        self, kind: str, payload: JobPayload, start: datetime | None, dedup_key: str | None
    ) -> str:
        self._check_schema()
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex,
            kind=kind,
            payload=payload,
            state=JobState.QUEUED,
            attempts=0,
            enqueued_at=now,
            run_at=start.timestamp() if start else None,
            dedup_key=dedup_key,
        )
        self._records.put(record)
        self._schedule(record.id, record.run_at)
        if dedup_key is None:
            return record.id
        # Queued first, claimed second: a crash in between leaves a job, never a claim
        # pointing at nothing. The loser forgets its record, so its queue entry runs nothing.
        for _ in range(3):
            if self._records.claim_dedup(dedup_key, record.id, now):
                return record.id
            holder = self._records.dedup_holder(dedup_key)
            if holder is not None:
                self._records.forget(record.id)
                return holder
        return record.id

    def _run(self, job_id: str) -> None:
        """huey's task: one attempt of the job, on the service's loop."""
        record = self._records.get(job_id)
        if record is None or record.state != JobState.QUEUED:
            return  # a dedup loser, a job forgotten after retention, or a duplicate entry
        if record.attempts == 0 and record.dedup_key is not None:
            self._records.release_dedup(record.dedup_key, record.id)
        kind = self.registry.get(record.kind)
        if kind is None:
            record.last_error = f"UnknownJobKind: no job kind {record.kind!r} is declared"
            self._records.finish(record, JobState.FAILED, time.time())
            return
        record.state, record.attempts = JobState.RUNNING, record.attempts + 1
        attempt, loop = record.attempts, self._loop
        self._leases.hold(job_id, attempt)
        self._records.put(record)
        if loop is None:  # pragma: no cover - the consumer runs only after start()
            raise RuntimeError("the embedded job engine runs no worker")
        future = asyncio.run_coroutine_threadsafe(_handle(kind.handler, record.payload), loop)
        with self._in_flight_lock:
            self._in_flight.add(future)
        outcome: str | None = None
        interrupted = False
        try:
            while True:
                try:
                    future.result(timeout=self.options.heartbeat)
                    break
                except TimeoutError:
                    self._leases.renew(job_id, attempt)
        except concurrent.futures.CancelledError:
            outcome, interrupted = INTERRUPTED, True
        except Exception as failure:
            logger.warning("job %s (%s) attempt %d failed", job_id, record.kind, attempt)
            outcome = error_text(failure)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(future)
        self._record_outcome(job_id, attempt, outcome, interrupted=interrupted)

    def _record_outcome(
        self, job_id: str, attempt: int, error: str | None, *, interrupted: bool
    ) -> None:
        record = self._records.get(job_id)
        if record is None or record.state != JobState.RUNNING or record.attempts != attempt:
            logger.warning("job %s attempt %d ended after its lease was lost", job_id, attempt)
            return
        now = time.time()
        self._leases.release(job_id)
        if error is None:
            self._records.finish(record, JobState.DONE, now)
            return
        record.last_error = error
        delay = retry_delay(self.registry, record, now)
        if delay is None:
            self._records.finish(record, JobState.FAILED, now)
            return
        wait = 0.0 if interrupted else delay.total_seconds()
        record.state, record.run_at = JobState.QUEUED, now + wait
        self._records.put(record)
        raise RetryTask(delay=wait)  # huey puts the same entry back on its schedule

    # --- the scheduler thread ---------------------------------------------------------------

    def sweep(self) -> None:
        """Run again the jobs whose lease ran out (their worker was lost); forget finished jobs
        after the retention period, and tick claims after a day."""
        now = time.time()
        self._leases.sweep(now)
        forget_old(self._records, now, self.options.retention)

    def enqueue_periodic(self, now: datetime) -> None:
        """See `PeriodicJobs.enqueue_periodic`: the scheduler thread calls it."""
        self._periodic.enqueue_periodic(now)


def _as_task(run: Callable[[str], None]) -> Callable[[str], None]:
    def run_job(job_id: str) -> None:
        run(job_id)

    run_job.__module__, run_job.__doc__ = TASK_MODULE, run.__doc__
    return run_job


async def _handle(handler: JobHandler, payload: JobPayload) -> None:
    await handler(payload)


def _join(consumer: _Consumer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for _worker, thread in consumer.worker_threads:
        thread.join(max(deadline - time.monotonic(), 0))
    consumer.scheduler.join(max(deadline - time.monotonic(), 0))
