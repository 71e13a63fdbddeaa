"""The job store: huey's SQLite file, and the records this engine keeps in its key-value table.

Apart from the engine because these are the engine's data, not its threads: where the file
lives and its tables (`chatbots migrate`), a record per job (`job:<id>`: kind, payload, state,
attempts, last error) so a status is readable by id and a retry knows how many attempts came
before, the index of finished jobs by time (`finished:<epoch>:<id>`), the dedup claims
(`dedup:<key>`), and the retry policy read off a record. Every key is written with huey's own
calls; `JobRecords.keys` is the one query here that knows huey's table (`kv`, keyed by queue and
key): huey has no call to read keys by range.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import timedelta

from adapters.jobs.huey_import import EmptyData, SqliteStorage
from application.jobs import JobPayload, JobRegistry, JobState

QUEUE_NAME = "chatbots"
HUEY_TABLES = ("kv", "schedule", "task")
SWEEP_BATCH = 500


def jobs_file_for(database_path: str) -> str:
    """`./chatbots.db` -> `./chatbots.db-jobs` (what `make clean` and .gitignore already cover)."""
    return f"{database_path}-jobs"


def create_embedded_schema(path: str) -> None:
    """huey's tables, created if missing; what `chatbots migrate` runs for this engine."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    SqliteStorage(QUEUE_NAME, filename=path).close()  # create_tables=True: CREATE IF NOT EXISTS


def huey_tables_present(storage: SqliteStorage, path: str) -> bool:
    """Whether the file exists and holds huey's tables (`chatbots migrate` ran)."""
    return bool(
        os.path.exists(path)
        and storage.sql(
            "select count(*) from sqlite_master where type = 'table' and name in (?, ?, ?)",
            HUEY_TABLES,
            results=True,
        )[0][0]
        == len(HUEY_TABLES)
    )


@dataclass
class JobRecord:
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
    def load(cls, raw: bytes) -> JobRecord:
        return cls(**json.loads(raw))


def claim(at: float, **values: str | int | float) -> bytes:
    return json.dumps({"at": at, **values}).encode()


def stamp(seconds: float) -> str:
    """Epoch seconds that sort as text, for keys read by range."""
    return f"{int(seconds):012d}"


def retry_delay(registry: JobRegistry, record: JobRecord, now: float) -> timedelta | None:
    """The kind's retry policy after a failed or lost attempt: the backoff, or None to fail."""
    if record.kind not in registry:
        return None
    age = timedelta(seconds=now - record.enqueued_at)
    return registry[record.kind].retry.retry_delay(record.attempts, age)


class JobRecords:
    """The job records and the dedup claims, on huey's key-value table."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.storage = storage

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.storage.peek_data(f"job:{job_id}")
        return None if raw is EmptyData else JobRecord.load(raw)

    def put(self, record: JobRecord) -> None:
        self.storage.put_data(f"job:{record.id}", record.dump())

    def forget(self, job_id: str) -> None:
        self.storage.delete_data(f"job:{job_id}")

    def finish(self, record: JobRecord, state: JobState, now: float) -> None:
        record.state, record.finished_at = state, now
        self.put(record)
        self.storage.put_data(f"finished:{stamp(now)}:{record.id}", b"")

    def keys(self, start: str, stop: str) -> list[tuple[str, bytes]]:
        """Keys from `start` (included) to `stop` (excluded), on huey's primary key."""
        rows: list[tuple[str, bytes]] = self.storage.sql(
            "select key, value from kv where queue = ? and key >= ? and key < ? "
            "order by key limit ?",
            (QUEUE_NAME, start, stop, SWEEP_BATCH),
            results=True,
        )
        return rows

    # --- dedup keys -------------------------------------------------------------------------

    def claim_dedup(self, dedup_key: str, job_id: str, now: float) -> bool:
        """Whether this job took the key (`put_if_empty`: one winner across processes)."""
        taken: bool = self.storage.put_if_empty(f"dedup:{dedup_key}", claim(now, id=job_id))
        return taken

    def dedup_holder(self, dedup_key: str) -> str | None:
        """The job holding the key, if it still waits for its first attempt; a stale claim
        (its job started or is gone) is removed."""
        raw = self.storage.peek_data(f"dedup:{dedup_key}")
        if raw is EmptyData:
            return None
        holder_id: str = json.loads(raw)["id"]
        holder = self.get(holder_id)
        if holder is not None and holder.state == JobState.QUEUED and holder.attempts == 0:
            return holder_id
        self.release_dedup(dedup_key, holder_id)
        return None

    def release_dedup(self, dedup_key: str, job_id: str) -> None:
        raw = self.storage.peek_data(f"dedup:{dedup_key}")
        if raw is not EmptyData and json.loads(raw)["id"] == job_id:
            self.storage.delete_data(f"dedup:{dedup_key}")
