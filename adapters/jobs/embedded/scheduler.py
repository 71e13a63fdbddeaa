"""huey's scheduler thread as this engine runs it: periodic jobs once per tick, and retention.

Apart from the engine because it is the clock's side: huey's scheduler, ticking at the poll
interval instead of whole seconds, moves due delayed jobs and retries to the queue, runs the
sweep (lost leases, `leases`; retention, here) and enqueues periodic jobs. Periodic jobs are
enqueued once per tick over all processes (a claim per tick, `periodic:<epoch>:<name>`, with
`put_if_empty`); finished jobs are forgotten after the retention period and tick claims after a
day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.jobs import json_payload, minute_of
from adapters.jobs.cron import cron_matches
from adapters.jobs.embedded.records import JobRecords, claim, stamp
from adapters.jobs.huey_import import Scheduler
from application.jobs import JobPayload, JobRegistry

if TYPE_CHECKING:
    from adapters.jobs.embedded.engine import EmbeddedJobs

logger = logging.getLogger("chatbots.jobs")

CLAIMS_KEPT = timedelta(days=1)


class PollingScheduler(Scheduler):  # type: ignore[misc]
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


class PeriodicJobs:
    """The registry's periodic jobs, enqueued through the engine's `enqueue` (in its thread)."""

    def __init__(
        self,
        records: JobRecords,
        registry: JobRegistry,
        enqueue: Callable[[str, JobPayload, datetime | None, str | None], str],
    ) -> None:
        self.records = records
        self.registry = registry
        self._enqueue = enqueue
        self._periodic_until: datetime | None = None

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
                tick = f"periodic:{stamp(minute.timestamp())}:{schedule.name}"
                if cron_matches(schedule.cron, minute) and self.records.storage.put_if_empty(
                    tick, claim(time.time())
                ):
                    self._enqueue(schedule.kind, json_payload(schedule.payload), None, None)
            minute += timedelta(minutes=1)


def forget_old(records: JobRecords, now: float, retention: timedelta) -> None:
    """Forget finished jobs after the retention period, and tick claims after a day."""
    horizon = now - retention.total_seconds()
    for key, _ in records.keys("finished:", f"finished:{stamp(horizon)}"):
        records.forget(key.rsplit(":", 1)[1])
        records.storage.delete_data(key)
    ticks_horizon = stamp(now - CLAIMS_KEPT.total_seconds())
    for key, _ in records.keys("periodic:", f"periodic:{ticks_horizon}"):
        records.storage.delete_data(key)
