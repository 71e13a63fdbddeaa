"""`DistributedJobs`: the job port on procrastinate, its worker, and the sweep.

Apart from the schema because this is what the API and `chatbots worker` run: one procrastinate
task per job kind (`{"payload", "enqueued_at"}` as its arguments) with the kind's `RetryPolicy`
as its retry strategy, the last error's text in `chatbots_job_errors`, the dedup key released
when the first attempt starts, and the periodic sweep that retries the jobs of workers whose
heartbeat stopped and forgets finished jobs after the retention period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg_pool
from procrastinate import App, BaseRetryStrategy, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Job, Status

from adapters.jobs import (
    INTERRUPTED,
    WorkerOptions,
    error_text,
    first_run_at,
    json_payload,
    worker_lost,
)
from adapters.jobs.distributed.schema import SCHEMA, libpq_conninfo
from application.jobs import (
    JobKind,
    JobQueueUnavailable,
    JobRegistry,
    JobState,
    JobStatus,
    RetryPolicy,
)

logger = logging.getLogger("chatbots.jobs")

QUEUE = "chatbots"
SWEEP_TASK = "chatbots.jobs.sweep"
_STATES = {
    "todo": JobState.QUEUED,
    "doing": JobState.RUNNING,
    "succeeded": JobState.DONE,
    "failed": JobState.FAILED,
    "cancelled": JobState.FAILED,
    "aborted": JobState.FAILED,
}

RECORD_ERROR = """
INSERT INTO chatbots_job_errors (job_id, error) VALUES (%(job_id)s, %(error)s)
ON CONFLICT (job_id) DO UPDATE SET error = EXCLUDED.error, at = now()
"""
JOB_STATUS = """
SELECT job.id, job.task_name, job.status::text AS status, job.attempts, e.error
  FROM procrastinate_jobs job
  LEFT JOIN chatbots_job_errors e ON e.job_id = job.id
 WHERE job.id = %(job_id)s
"""
WAITING_WITH_KEY = """
SELECT id FROM procrastinate_jobs WHERE queueing_lock = %(key)s AND status = 'todo'
"""
RELEASE_KEY = "UPDATE procrastinate_jobs SET queueing_lock = NULL WHERE id = %(job_id)s"


class _PolicyRetry(BaseRetryStrategy):
    """The kind's RetryPolicy, as procrastinate asks it after a failed attempt."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        delay = self.policy.retry_delay(job.attempts + 1, _age(job))
        return None if delay is None else RetryDecision(retry_at=datetime.now(UTC) + delay)


def _age(job: Job) -> timedelta:
    since = job.task_kwargs.get("enqueued_at") or job.task_kwargs.get("timestamp")
    if not isinstance(since, (int, float)):
        return timedelta(0)
    return timedelta(seconds=max(time.time() - since, 0))


class DistributedJobs:
    def __init__(
        self,
        registry: JobRegistry,
        database_url: str,
        options: WorkerOptions | None = None,
        *,
        pool_size: int = 4,
    ) -> None:
        self.registry = registry
        self.options = options or WorkerOptions()
        self.connector = PsycopgConnector(
            conninfo=libpq_conninfo(database_url),
            kwargs={"options": f"-c search_path={SCHEMA}"},
            min_size=1,
            max_size=pool_size,
            name="chatbots-jobs",
        )
        self.app = App(connector=self.connector)
        self._tasks: dict[str, Any] = {kind.name: self._task_for(kind) for kind in registry}
        for schedule in registry.periodic:
            self.app.periodic(
                cron=schedule.cron,
                periodic_id=schedule.name,
                task_kwargs={"payload": dict(schedule.payload)},
            )(self._tasks[schedule.kind])
        sweep = self.app.task(name=SWEEP_TASK, queue=QUEUE, lock=SWEEP_TASK)(self._periodic_sweep)
        self.app.periodic(cron="* * * * *", periodic_id=SWEEP_TASK)(sweep)
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._worker: asyncio.Task[None] | None = None

    def _task_for(self, kind: JobKind) -> Any:
        async def run(
            context: JobContext,
            payload: dict[str, Any] | None = None,
            enqueued_at: float | None = None,
            timestamp: int | None = None,
        ) -> None:
            job = context.job
            if job.attempts == 0 and job.queueing_lock is not None:
                await self.connector.execute_query_async(RELEASE_KEY, job_id=job.id)
            try:
                await kind.handler(json_payload(payload))
            except asyncio.CancelledError:
                await self._record_error(job, INTERRUPTED)
                raise
            except Exception as error:
                logger.warning("job %s (%s) attempt %d failed", job.id, kind.name, job.attempts + 1)
                await self._record_error(job, error_text(error))
                raise

        return self.app.task(
            name=kind.name, queue=QUEUE, pass_context=True, retry=_PolicyRetry(kind.retry)
        )(run)

    async def _record_error(self, job: Job, error: str) -> None:
        await asyncio.shield(
            self.connector.execute_query_async(RECORD_ERROR, job_id=job.id, error=error)
        )

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
        await self._open()
        deferrer = self._tasks[kind].configure(schedule_at=start, queueing_lock=dedup_key)
        for _ in range(3):
            try:
                job_id: int = await deferrer.defer_async(payload=body, enqueued_at=time.time())
                return str(job_id)
            except AlreadyEnqueued:
                rows = await self._query(WAITING_WITH_KEY, key=dedup_key)
                if rows:
                    return str(rows[0]["id"])
            except ConnectorException as error:
                raise JobQueueUnavailable(f"the job store: {error.__cause__ or error}") from error
        raise JobQueueUnavailable(f"could not enqueue {kind!r} under dedup key {dedup_key!r}")

    async def status(self, job_id: str) -> JobStatus | None:
        if not job_id.isdecimal():
            return None
        await self._open()
        rows = await self._query(JOB_STATUS, job_id=int(job_id))
        if not rows:
            return None
        row = rows[0]
        state = _STATES[row["status"]]
        attempts = row["attempts"] + (1 if state is JobState.RUNNING else 0)
        return JobStatus(str(row["id"]), row["task_name"], state, attempts, row["error"])

    async def _query(self, query: str, **arguments: Any) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = await self.connector.execute_query_all_async(
                query, **arguments
            )
            return rows
        except ConnectorException as error:
            raise JobQueueUnavailable(f"the job store: {error.__cause__ or error}") from error

    async def _open(self) -> None:
        async with self._open_lock:
            if self._opened:
                return
            try:
                await self.app.open_async()
            except (ConnectorException, psycopg.Error, psycopg_pool.PoolTimeout) as error:
                raise JobQueueUnavailable(f"the job store: {error}") from error
            self._opened = True

    # --- the worker -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._worker is not None:
            return
        await self._open()
        if not await self.app.check_connection_async():
            raise JobQueueUnavailable("the job store is not set up: run `chatbots migrate`")
        self._worker = asyncio.create_task(
            self.app.run_worker_async(
                queues=[QUEUE],
                name="chatbots",
                concurrency=self.options.concurrency,
                install_signal_handlers=False,
                fetch_job_polling_interval=self.options.poll_interval,
                abort_job_polling_interval=max(self.options.poll_interval, 1.0),
                shutdown_graceful_timeout=self.options.grace,
                update_heartbeat_interval=self.options.heartbeat,
                stalled_worker_timeout=self.options.lease,
            ),
            name="procrastinate worker",
        )

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.cancel()  # procrastinate stops gracefully: running jobs get the grace period
        await asyncio.gather(worker, return_exceptions=True)

    async def aclose(self) -> None:
        await self.stop()
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def _periodic_sweep(self, timestamp: int) -> None:
        await self.sweep()

    async def sweep(self) -> None:
        """Retry (or fail, per the kind's policy) the jobs of workers whose heartbeat stopped,
        then forget finished jobs older than the retention period."""
        await self._open()
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=self.options.lease):
            attempt = job.attempts + 1
            logger.warning(
                "job %s (%s): its worker was lost on attempt %d", job.id, job.task_name, attempt
            )
            await self._record_error(job, worker_lost(attempt))
            kind = self.registry.get(job.task_name)
            delay = kind.retry.retry_delay(attempt, _age(job)) if kind else None
            try:
                if delay is None:
                    await manager.finish_job(job, status=Status.FAILED, delete_job=False)
                else:
                    await manager.retry_job(job, retry_at=datetime.now(UTC) + delay)
            except ConnectorException:
                logger.info("job %s changed while the sweep looked at it", job.id)
        await manager.delete_old_jobs(
            nb_hours=int(self.options.retention.total_seconds() // 3600),
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )
