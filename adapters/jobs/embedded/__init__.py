"""The embedded job engine: huey (MIT) on a SQLite file of its own, worked in process.

huey keeps the queue (`task`), the delayed jobs and retries (`schedule`, moved to the queue by
its scheduler thread when due) and a key-value table in one SQLite file next to the database
(`chatbots.db-jobs`), written in WAL mode with its exclusive transactions, so a job enqueued
before a crash or a restart is still there after it, and two workers (threads or processes on
the same file) never dequeue the same entry. Its consumer's threads run here inside the API
process (or `chatbots worker`); each hands the job's async handler to the service's event loop
and waits for it.

What huey does not do, this package adds on its key-value table, with huey's own calls:
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

The rooms:
- `records`: the job store file and its tables, the job records, dedup claims and the retry
  policy on huey's key-value table (`JobRecords`).
- `leases`: the leases of running jobs and the sweep for jobs whose worker was lost (`Leases`).
- `scheduler`: huey's scheduler as run here, periodic jobs (`PeriodicJobs`) and retention.
- `engine`: `EmbeddedJobs`, the port and the worker, and the bridge from huey's threads to the
  service's event loop.

huey itself is imported from `adapters.jobs.huey_import` only, which hides redis and psycopg
while it loads.
"""

from __future__ import annotations

from adapters.jobs.embedded.engine import EmbeddedJobs
from adapters.jobs.embedded.records import create_embedded_schema, jobs_file_for

__all__ = ["EmbeddedJobs", "create_embedded_schema", "jobs_file_for"]
