"""Job engines across processes: `chatbots migrate` sets up the job store, `chatbots worker`
works jobs this process enqueued (on PostgreSQL and, as a second process, on the SQLite file),
and a worker killed in the middle of a job leaves it to be run again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.jobs import JobEngine, WorkerOptions
from adapters.jobs.distributed import DistributedJobs
from adapters.jobs.embedded import EmbeddedJobs, create_embedded_schema, jobs_file_for
from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWorkFactory
from application.housekeeping import PURGE_IDEMPOTENCY_KEYS
from application.jobs import JobKind, JobPayload, JobRegistry, JobState, RetryPolicy
from application.ports import IdempotencyRecord
from entrypoints.bootstrap import build_container, shutdown
from entrypoints.settings import Settings
from tests.contract.test_jobs import jobs_postgres_url, wait_for_state
from tests.databases import sqlite_database

pytestmark = pytest.mark.integration
__all__ = ["jobs_postgres_url"]  # the session database with the job schema, shared

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
FAST_ENV = {
    "CHATBOTS_ENV": "test",
    "CHATBOTS_JOBS_POLL_SECONDS": "0.05",
    "CHATBOTS_JOBS_LEASE_SECONDS": "3",
    "CHATBOTS_JOBS_GRACE_SECONDS": "5",
    "CHATBOTS_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def jobs_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("jobs_postgres_url")
        return
    with sqlite_database(tmp_path) as url:
        create_embedded_schema(jobs_file_for(url.split(":///", 1)[1]))
        yield url


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, env="test", jobs_poll_seconds=0.05, seed_example_bot=False)  # type: ignore[call-arg]


def chatbots(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", *args],
        cwd=ROOT,
        env={**os.environ, **FAST_ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def add_expired_idempotency_key(url: str, key: str) -> SqlAlchemyUnitOfWorkFactory:
    uow_factory = SqlAlchemyUnitOfWorkFactory(create_engine(url))
    async with uow_factory() as uow:
        await uow.idempotency.add(
            IdempotencyRecord(
                principal="jobs-test",
                key=key,
                fingerprint="f" * 64,
                response={"status": 201},
                created_at=datetime.now(UTC) - timedelta(days=3),
            )
        )
        await uow.commit()
    return uow_factory


@pytest.mark.parametrize("jobs_database_url", BACKENDS, indirect=True)
async def test_chatbots_worker_works_a_job_this_process_enqueued(jobs_database_url: str) -> None:
    """The real housekeeping job, end to end: enqueued here, worked by `chatbots worker` (on
    SQLite a second process on the same file), stopped by SIGTERM."""
    database_url = jobs_database_url
    uow_factory = await add_expired_idempotency_key(database_url, f"k-{time.time_ns()}")
    container = build_container(settings_for(database_url))
    try:
        job_id = await container.jobs().enqueue(PURGE_IDEMPOTENCY_KEYS)
        worker = chatbots("worker", env={"CHATBOTS_DATABASE_URL": database_url})
        try:
            status = await wait_for_state(container.jobs(), job_id, JobState.DONE, within=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            output = await asyncio.to_thread(worker.communicate, timeout=20)
        assert worker.returncode == 0, output[0].decode()
        assert status.attempts == 1
        async with uow_factory() as uow:
            assert await uow.idempotency.purge_older_than(datetime.now(UTC)) == 0  # purged
    finally:
        await shutdown(container)
        await uow_factory.engine.dispose()


@pytest.mark.parametrize("jobs_database_url", BACKENDS, indirect=True)
def test_chatbots_migrate_sets_up_the_job_store_and_can_run_again(
    jobs_database_url: str, tmp_path: Path
) -> None:
    database_url = jobs_database_url
    if "sqlite" in database_url:  # a fresh file: migrate creates both the database and huey's
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    outputs = []
    for _ in range(2):
        process = chatbots("migrate", env={"CHATBOTS_DATABASE_URL": database_url})
        out, _err = process.communicate(timeout=120)
        assert process.returncode == 0, out.decode()
        outputs.append(out.decode())
    if "sqlite" in database_url:
        assert f"job store (huey): {tmp_path / 'fresh.db'}-jobs" in outputs[1]
        assert (tmp_path / "fresh.db-jobs").exists()
    else:
        assert "job store (procrastinate): up to date" in outputs[1], outputs


CRASHING_WORKER = """
import asyncio, os, sys
from adapters.jobs import WorkerOptions
from adapters.jobs.{module} import {engine}
from application.jobs import JobKind, JobRegistry, RetryPolicy
from datetime import timedelta

async def never_ends(payload):
    print("running", flush=True)
    await asyncio.sleep(3600)

async def main():
    registry = JobRegistry([JobKind("crashy", never_ends, RetryPolicy(first_delay=timedelta(0)))])
    engine = {engine}(registry, sys.argv[1], WorkerOptions(poll_interval=0.05, lease=1.5))
    await engine.start()
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("jobs_database_url", BACKENDS, indirect=True)
async def test_a_job_whose_worker_was_killed_runs_again(jobs_database_url: str) -> None:
    """SIGKILL in the middle of a job: nothing in the dead process can clean up; the job's lease
    (embedded) or its worker's heartbeat (distributed) runs out, and a sweep queues it again."""
    database_url = jobs_database_url
    ran: list[JobPayload] = []

    async def finishes(payload: JobPayload) -> None:
        ran.append(payload)

    registry = JobRegistry([JobKind("crashy", finishes, RetryPolicy(first_delay=timedelta(0)))])
    options = WorkerOptions(poll_interval=0.05, lease=1.5)
    store: str
    survivor: JobEngine
    if "sqlite" in database_url:
        store = jobs_file_for(database_url.split(":///", 1)[1])
        survivor = EmbeddedJobs(registry, store, options)
        module, engine_name = "embedded", "EmbeddedJobs"
    else:
        store = database_url
        survivor = DistributedJobs(registry, store, options)
        module, engine_name = "distributed", "DistributedJobs"
    script = textwrap.dedent(CRASHING_WORKER).format(module=module, engine=engine_name)
    try:
        job_id = await survivor.enqueue("crashy", {"n": 1})
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, store, cwd=ROOT, stdout=subprocess.PIPE
        )
        assert doomed.stdout is not None
        assert await doomed.stdout.readline() == b"running\n"
        doomed.kill()  # SIGKILL: no graceful anything
        await doomed.wait()
        status = await survivor.status(job_id)
        assert status is not None
        assert (status.state, status.attempts) == (JobState.RUNNING, 1)

        await asyncio.sleep(2.0)  # the lease / the heartbeat runs out (1.5 s)
        if isinstance(survivor, EmbeddedJobs):
            await asyncio.to_thread(survivor.sweep)
        else:
            assert isinstance(survivor, DistributedJobs)
            await survivor.sweep()
        await survivor.start()
        done = await wait_for_state(survivor, job_id, JobState.DONE)
        assert done.attempts == 2
        assert done.last_error == "the worker was lost while it ran attempt 1"
        assert ran == [{"n": 1}]
    finally:
        await survivor.aclose()
