"""The embedded job engine: huey (MIT) on a SQLite file of its own, worked in process.

huey keeps the queue (`task`), the delayed jobs and retries (`schedule`, moved to the queue by
its scheduler thread when due) and a key-value table in one SQLite file next to the database
(`chatbots.db-jobs`), written in WAL mode with its exclusive transactions, so a job enqueued
before a crash or a restart is still there after it, and two workers (threads or processes on
the same file) never dequeue the same entry. Its consumer's threads run here inside the API
process (or `chatbots worker`); each hands the job's async handler to the service's event loop
and waits for it.

What huey does not do, this module adds on its key-value table, with huey's own calls:
- a record per job (`job:<id>`: kind, payload, state, attempts, last error), so a status is
  readable by id and a retry knows how many attempts came before;
- the retry policy: a failed attempt raises huey's `RetryTask` with the policy's backoff, or
  ends as failed;
- at least once: huey deletes a queue entry when it hands it out, so a worker that died while
  running a job would lose it. A running job holds a lease (`lease:<id>`) that its worker
  renews; the sweep (every lease / 2, in every process) runs a job again whose lease ran out
  (a claim key makes one process do it);
- dedup keys and periodic jobs once per tick across processes (claim keys, `put_if_empty`);
- retention: finished jobs are indexed by time (`finished:<epoch>:<id>`) and forgotten after it.
The sweep reads those keys by range, the one query here that knows huey's table (`kv`, keyed
by queue and key): huey has no call for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from adapters.jobs import (
    WorkerOptions,
    error_text,
    first_run_at,
    from_epoch,
    json_payload,
    minute_of,
)
from adapters.jobs.cron import cron_matches
from adapters.jobs.huey_import import (
    Consumer,
    EmptyData,
    RetryTask,
    Scheduler,
    SqliteHuey,
    SqliteStorage,
)
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

QUEUE_NAME = "chatbots"
HUEY_TABLES = ("kv", "schedule", "task")
CLAIMS_KEPT = timedelta(days=1)
SWEEP_BATCH = 500
INTERRUPTED = "interrupted: the worker stopped while it ran"


def jobs_file_for(database_path: str) -> str:
    """`./chatbots.db` -> `./chatbots.db-jobs` (what `make clean` and .gitignore already cover)."""
    return f"{database_path}-jobs"


def create_embedded_schema(path: str) -> None:
    """huey's tables, created if missing; what `chatbots migrate` runs for this engine."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    SqliteStorage(QUEUE_NAME, filename=path).close()  # create_tables=True: CREATE IF NOT EXISTS


@dataclass
class _Record:
    id: str
    kind: str
    payload: JobPayload
    state: str
    attempts: int
    enqueued_at: float
    run_at: float | None = None
    dedup_key: str | None = None
    last_error: str | None = None
    finished_at: float | None = None

    def dump(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def load(cls, raw: bytes) -> _Record:
        return cls(**json.loads(raw))


def _claim(at: float, **values: str | int | float) -> bytes:
    return json.dumps({"at": at, **values}).encode()


def _stamp(seconds: float) -> str:
    """Epoch seconds that sort as text, for keys read by range."""
    return f"{int(seconds):012d}"


class _Scheduler(Scheduler):  # type: ignore[misc]
    """huey's scheduler ticking at the poll interval instead of whole seconds; it also sweeps
    (lost leases, retention) and enqueues periodic jobs once per tick over all processes."""

    def __init__(self, engine: EmbeddedJobs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.interval = engine.options.poll_interval
        self._next_sweep = 0.0

    def loop(self, now: datetime | None = None) -> None:
        super().loop(now)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.engine.options.lease / 2
            try:
                self.engine.sweep()
            except Exception:
                logger.exception("the job sweep failed")

    def enqueue_periodic_tasks(self, now: datetime | None) -> None:
        try:
            self.engine.enqueue_periodic(datetime.now(UTC))
        except Exception:
            logger.exception("enqueueing periodic jobs failed")


class _Consumer(Consumer):  # type: ignore[misc]
    """huey's consumer without its signal handlers: uvicorn or `chatbots worker` owns them."""

    def __init__(self, engine: EmbeddedJobs, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(engine.huey, **kwargs)

    def _create_scheduler(self) -> _Scheduler:
        return _Scheduler(
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
        self._run_job = self.huey.task(name="run_job")(self._run)
        self._storage: SqliteStorage = self.huey.storage
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: _Consumer | None = None
        self._in_flight: set[concurrent.futures.Future[None]] = set()
        self._in_flight_lock = threading.Lock()
        self._schema_checked = False
        self._periodic_until: datetime | None = None

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
        record = await self._in_thread(self._get, job_id)
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
        present = os.path.exists(self.path) and self._storage.sql(
            "select count(*) from sqlite_master where type = 'table' and name in (?, ?, ?)",
            HUEY_TABLES,
            results=True,
        )[0][0] == len(HUEY_TABLES)
        if not present:
            raise JobQueueUnavailable(
                f"the job store {self.path} is not set up: run `chatbots migrate`"
            )
        self._schema_checked = True

    def _get(self, job_id: str) -> _Record | None:
        raw = self._storage.peek_data(f"job:{job_id}")
        return None if raw is EmptyData else _Record.load(raw)

    def _put(self, record: _Record) -> None:
        self._storage.put_data(f"job:{record.id}", record.dump())

    def _finish(self, record: _Record, state: JobState, now: float) -> None:
        record.state, record.finished_at = state, now
        self._put(record)
        self._storage.put_data(f"finished:{_stamp(now)}:{record.id}", b"")

    def _keys(self, start: str, stop: str) -> list[tuple[str, bytes]]:
        """Keys from `start` (included) to `stop` (excluded), on huey's primary key."""
        rows: list[tuple[str, bytes]] = self._storage.sql(
            "select key, value from kv where queue = ? and key >= ? and key < ? "
            "order by key limit ?",
            (QUEUE_NAME, start, stop, SWEEP_BATCH),
            results=True,
        )
        return rows

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
        record = _Record(
            id=uuid.uuid4().hex,
            kind=kind,
            payload=payload,
            state=JobState.QUEUED,
            attempts=0,
            enqueued_at=now,
            run_at=start.timestamp() if start else None,
            dedup_key=dedup_key,
        )
        self._put(record)
        self._schedule(record.id, record.run_at)
        if dedup_key is None:
            return record.id
        # Queued first, claimed second: a crash in between leaves a job, never a claim
        # pointing at nothing. The loser forgets its record, so its queue entry runs nothing.
        for _ in range(3):
            if self._storage.put_if_empty(f"dedup:{dedup_key}", _claim(now, id=record.id)):
                return record.id
            holder = self._dedup_holder(dedup_key)
            if holder is not None:
                self._storage.delete_data(f"job:{record.id}")
                return holder
        return record.id

    def _dedup_holder(self, dedup_key: str) -> str | None:
        """The job holding the key, if it still waits for its first attempt; a stale claim
        (its job started or is gone) is removed."""
        raw = self._storage.peek_data(f"dedup:{dedup_key}")
        if raw is EmptyData:
            return None
        holder_id: str = json.loads(raw)["id"]
        holder = self._get(holder_id)
        if holder is not None and holder.state == JobState.QUEUED and holder.attempts == 0:
            return holder_id
        self._release_dedup(dedup_key, holder_id)
        return None

    def _release_dedup(self, dedup_key: str, job_id: str) -> None:
        raw = self._storage.peek_data(f"dedup:{dedup_key}")
        if raw is not EmptyData and json.loads(raw)["id"] == job_id:
            self._storage.delete_data(f"dedup:{dedup_key}")

    def _run(self, job_id: str) -> None:
        """huey's task: one attempt of the job, on the service's loop."""
        record = self._get(job_id)
        if record is None or record.state != JobState.QUEUED:
            return  # a dedup loser, a job forgotten after retention, or a duplicate entry
        if record.attempts == 0 and record.dedup_key is not None:
            self._release_dedup(record.dedup_key, record.id)
        kind = self.registry.get(record.kind)
        if kind is None:
            record.last_error = f"UnknownJobKind: no job kind {record.kind!r} is declared"
            self._finish(record, JobState.FAILED, time.time())
            return
        record.state, record.attempts = JobState.RUNNING, record.attempts + 1
        attempt, loop = record.attempts, self._loop
        self._hold_lease(job_id, attempt)
        self._put(record)
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
                    self._renew_lease(job_id, attempt)
        except concurrent.futures.CancelledError:
            outcome, interrupted = INTERRUPTED, True
        except Exception as failure:
            logger.warning("job %s (%s) attempt %d failed", job_id, record.kind, attempt)
            outcome = error_text(failure)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(future)
        self._record_outcome(job_id, attempt, outcome, interrupted=interrupted)

    def _hold_lease(self, job_id: str, attempt: int) -> None:
        until = time.time() + self.options.lease
        self._storage.put_data(f"lease:{job_id}", _claim(until, attempt=attempt))

    def _lease_attempt(self, job_id: str) -> int | None:
        raw = self._storage.peek_data(f"lease:{job_id}")
        return None if raw is EmptyData else int(json.loads(raw)["attempt"])

    def _renew_lease(self, job_id: str, attempt: int) -> None:
        if self._lease_attempt(job_id) == attempt:
            self._hold_lease(job_id, attempt)

    def _record_outcome(
        self, job_id: str, attempt: int, error: str | None, *, interrupted: bool
    ) -> None:
        record = self._get(job_id)
        if record is None or record.state != JobState.RUNNING or record.attempts != attempt:
            logger.warning("job %s attempt %d ended after its lease was lost", job_id, attempt)
            return
        now = time.time()
        self._storage.delete_data(f"lease:{job_id}")
        if error is None:
            self._finish(record, JobState.DONE, now)
            return
        record.last_error = error
        delay = self._retry_delay(record, now)
        if delay is None:
            self._finish(record, JobState.FAILED, now)
            return
        wait = 0.0 if interrupted else delay.total_seconds()
        record.state, record.run_at = JobState.QUEUED, now + wait
        self._put(record)
        raise RetryTask(delay=wait)  # huey puts the same entry back on its schedule

    def _retry_delay(self, record: _Record, now: float) -> timedelta | None:
        if record.kind not in self.registry:
            return None
        age = timedelta(seconds=now - record.enqueued_at)
        return self.registry[record.kind].retry.retry_delay(record.attempts, age)

    # --- the scheduler thread ---------------------------------------------------------------

    def sweep(self) -> None:
        """Run again the jobs whose lease ran out (their worker was lost); forget finished jobs
        after the retention period, and tick claims after a day."""
        now = time.time()
        for key, raw in self._keys("lease:", "lease;"):
            lease = json.loads(raw)
            if lease["at"] < now:
                self._take_over(key.removeprefix("lease:"), int(lease["attempt"]), now)
        horizon = now - self.options.retention.total_seconds()
        for key, _ in self._keys("finished:", f"finished:{_stamp(horizon)}"):
            self._storage.delete_data(f"job:{key.rsplit(':', 1)[1]}")
            self._storage.delete_data(key)
        ticks_horizon = _stamp(now - CLAIMS_KEPT.total_seconds())
        for key, _ in self._keys("periodic:", f"periodic:{ticks_horizon}"):
            self._storage.delete_data(key)

    def _take_over(self, job_id: str, attempt: int, now: float) -> None:
        claim = f"takeover:{job_id}:{attempt}"
        if not self._storage.put_if_empty(claim, _claim(now)):
            return
        try:
            record = self._get(job_id)
            if record is None or record.state != JobState.RUNNING or record.attempts != attempt:
                return
            logger.warning(
                "job %s (%s): its worker was lost on attempt %d", job_id, record.kind, attempt
            )
            record.last_error = f"the worker was lost while it ran attempt {attempt}"
            self._storage.delete_data(f"lease:{job_id}")
            delay = self._retry_delay(record, now)
            if delay is None:
                self._finish(record, JobState.FAILED, now)
                return
            record.state, record.run_at = JobState.QUEUED, now + delay.total_seconds()
            self._put(record)
            self._schedule(job_id, record.run_at)
        finally:
            # Only needed while two sweeps race: a late one finds the job moved on.
            self._storage.delete_data(claim)

    def enqueue_periodic(self, now: datetime) -> None:
        """Enqueue the periodic jobs of every minute since the last call (huey's scheduler
        calls it about once a minute; the minute it lands in can skip one), at most ten back;
        a claim per tick makes one process enqueue it."""
        current = minute_of(now)
        last = self._periodic_until
        if last is None or not last < current <= last + timedelta(minutes=10):
            last = current - timedelta(minutes=1)
        self._periodic_until = current
        minute = last + timedelta(minutes=1)
        while minute <= current:
            for schedule in self.registry.periodic:
                tick = f"periodic:{_stamp(minute.timestamp())}:{schedule.name}"
                if cron_matches(schedule.cron, minute) and self._storage.put_if_empty(
                    tick, _claim(time.time())
                ):
                    self._enqueue(schedule.kind, json_payload(schedule.payload), None, None)
            minute += timedelta(minutes=1)


async def _handle(handler: JobHandler, payload: JobPayload) -> None:
    await handler(payload)


def _join(consumer: _Consumer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for _worker, thread in consumer.worker_threads:
        thread.join(max(deadline - time.monotonic(), 0))
    consumer.scheduler.join(max(deadline - time.monotonic(), 0))
