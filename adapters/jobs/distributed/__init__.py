"""The distributed job engine: procrastinate (MIT; PostgreSQL only, asyncio-native) on the
service's PostgreSQL database, worked by `chatbots worker` processes that scale apart from the
API (which only enqueues, unless `CHATBOTS_JOBS_WORK_IN_API` says otherwise).

procrastinate does the hard parts: a job is fetched with `FOR UPDATE SKIP LOCKED` and marked
`doing` in one statement (two workers never run one attempt), LISTEN/NOTIFY wakes workers at
once, retries are rescheduled by the worker, workers send heartbeats, periodic jobs are deferred
once per tick whatever the number of workers, `queueing_lock` refuses a second waiting job with
the same key. This package maps the port onto it:
- one procrastinate task per job kind, `{"payload", "enqueued_at"}` as its arguments;
- the kind's `RetryPolicy` as a procrastinate retry strategy (attempts, backoff, max age);
- the last error's text in a side table (`chatbots_job_errors`): procrastinate keeps a status,
  not an error;
- the dedup key is released when the first attempt starts, as on the other engines;
- a periodic sweep (every minute) retries the jobs of workers whose heartbeat stopped
  (procrastinate finds them, `get_stalled_jobs`, but leaves retrying to the application), and
  forgets finished jobs after the retention period.

Its tables live in a PostgreSQL schema of their own, `procrastinate` (the pool's search_path),
apart from the alembic-managed `public` one: migrations and autogenerate never see them.

The rooms:
- `schema`: procrastinate's tables and this engine's own, created or migrated in their
  PostgreSQL schema by `chatbots migrate`, and the service's URL as libpq reads it.
- `engine`: `DistributedJobs`, the port, the worker, the retry strategy and the sweep.
"""

from __future__ import annotations

from adapters.jobs.distributed.engine import DistributedJobs
from adapters.jobs.distributed.schema import (
    SCHEMA,
    create_distributed_schema,
    libpq_conninfo,
    pending_migrations,
)

__all__ = [
    "SCHEMA",
    "DistributedJobs",
    "create_distributed_schema",
    "libpq_conninfo",
    "pending_migrations",
]
