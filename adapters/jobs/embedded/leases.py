"""Leases on running jobs, and the sweep that runs again the jobs of a lost worker.

Apart from the engine because this is the part that makes it at least once: huey deletes a
queue entry when it hands it out, so a worker that died while running a job would lose it. A
running job holds a lease (`lease:<id>`: until when, which attempt) that its worker renews; the
sweep (every lease / 2, in every process, from the scheduler thread) runs a job again whose
lease ran out, or fails it per its kind's retry policy. A claim key (`takeover:<id>:<attempt>`)
makes one process do it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from adapters.jobs import WorkerOptions, worker_lost
from adapters.jobs.embedded.records import JobRecords, claim, retry_delay
from adapters.jobs.huey_import import EmptyData
from application.jobs import JobRegistry, JobState

logger = logging.getLogger("chatbots.jobs")


class Leases:
    def __init__(
        self,
        records: JobRecords,
        registry: JobRegistry,
        options: WorkerOptions,
        schedule: Callable[[str, float | None], None],
    ) -> None:
        self.records = records
        self.registry = registry
        self.options = options
        self._schedule = schedule  # puts a job's entry on huey's queue or schedule
        self._storage = records.storage

    # --- in the worker's thread -------------------------------------------------------------

    def hold(self, job_id: str, attempt: int) -> None:
        until = time.time() + self.options.lease
        self._storage.put_data(f"lease:{job_id}", claim(until, attempt=attempt))

    def attempt(self, job_id: str) -> int | None:
        raw = self._storage.peek_data(f"lease:{job_id}")
        return None if raw is EmptyData else int(json.loads(raw)["attempt"])

    def renew(self, job_id: str, attempt: int) -> None:
        if self.attempt(job_id) == attempt:
            self.hold(job_id, attempt)

    def release(self, job_id: str) -> None:
        self._storage.delete_data(f"lease:{job_id}")

    # --- in the scheduler thread ------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Run again the jobs whose lease ran out (their worker was lost)."""
        for key, raw in self.records.keys("lease:", "lease;"):
            lease = json.loads(raw)
            if lease["at"] < now:
                self._take_over(key.removeprefix("lease:"), int(lease["attempt"]), now)

    def _take_over(self, job_id: str, attempt: int, now: float) -> None:
        takeover = f"takeover:{job_id}:{attempt}"
        if not self._storage.put_if_empty(takeover, claim(now)):
            return
        try:
            record = self.records.get(job_id)
            if record is None or record.state != JobState.RUNNING or record.attempts != attempt:
                return
            logger.warning(
                "job %s (%s): its worker was lost on attempt %d", job_id, record.kind, attempt
            )
            record.last_error = worker_lost(attempt)
            self.release(job_id)
            delay = retry_delay(self.registry, record, now)
            if delay is None:
                self.records.finish(record, JobState.FAILED, now)
                return
            record.state, record.run_at = JobState.QUEUED, now + delay.total_seconds()
            self.records.put(record)
            self._schedule(job_id, record.run_at)
        finally:
            # Only needed while two sweeps race: a late one finds the job moved on.
            self._storage.delete_data(takeover)
