"""Housekeeping jobs: chores that keep the stores small, run as periodic background jobs."""

from __future__ import annotations

import logging
from datetime import timedelta

from application.conversations import IdempotencyKeys
from application.jobs import JobKind, JobPayload, JobRegistry, PeriodicJob, RetryPolicy

logger = logging.getLogger("chatbots.housekeeping")

PURGE_IDEMPOTENCY_KEYS = "housekeeping.purge_idempotency_keys"
PURGE_IDEMPOTENCY_KEYS_CRON = "17 * * * *"  # hourly; idempotency keys live 24 h


def housekeeping_jobs(idempotency: IdempotencyKeys) -> JobRegistry:
    async def purge_idempotency_keys(_payload: JobPayload) -> None:
        """Idempotent by nature: a second run finds nothing more to purge."""
        purged = await idempotency.purge_expired()
        if purged:
            logger.info("purged %d expired idempotency keys", purged)

    return JobRegistry(
        [
            JobKind(
                PURGE_IDEMPOTENCY_KEYS,
                purge_idempotency_keys,
                # The next hourly run does it anyway: a few quick retries are enough.
                RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=30)),
            )
        ],
        periodic=[PeriodicJob(PURGE_IDEMPOTENCY_KEYS, PURGE_IDEMPOTENCY_KEYS_CRON)],
    )
