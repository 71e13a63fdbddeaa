"""The job engine as the service wires it: the database URL selects the engine (a setting
overrides it), the API's lifespan works jobs in process on the embedded engine only, the
idempotency-key purge is an hourly periodic job, and shutdown stops the worker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.jobs.distributed import DistributedJobs
from adapters.jobs.embedded import EmbeddedJobs, create_embedded_schema
from adapters.jobs.memory import InMemoryJobs
from application.housekeeping import PURGE_IDEMPOTENCY_KEYS, PURGE_IDEMPOTENCY_KEYS_CRON
from application.jobs import JobState, PeriodicJob
from entrypoints.bootstrap import build_container, shutdown
from entrypoints.settings import JobsBackend, Settings
from entrypoints.worker import embedded_jobs_file, jobs_backend, works_in_api
from tests.api.conftest import client_for, make_app
from tests.contract.test_jobs import jobs_postgres_url, wait_for_state
from tests.databases import sqlite_database

pytestmark = pytest.mark.integration
__all__ = ["jobs_postgres_url"]

SQLITE = "sqlite+aiosqlite:///./data/chatbots.db"
POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/chatbots"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize(
    ("url", "backend", "in_api"),
    [
        (SQLITE, JobsBackend.EMBEDDED, True),
        (POSTGRES, JobsBackend.DISTRIBUTED, False),
        ("memory://", JobsBackend.MEMORY, True),
        ("sqlite+aiosqlite:///:memory:", JobsBackend.MEMORY, True),
    ],
)
def test_the_database_url_selects_the_engine(url: str, backend: JobsBackend, in_api: bool) -> None:
    chosen = settings(database_url=url)
    assert (jobs_backend(chosen), works_in_api(chosen)) == (backend, in_api)


def test_settings_override_the_engine_and_where_it_works() -> None:
    chosen = settings(
        database_url=POSTGRES,
        jobs_backend="embedded",
        jobs_sqlite_path="/var/lib/chatbots/jobs.db",
        jobs_work_in_api=False,
    )
    assert jobs_backend(chosen) is JobsBackend.EMBEDDED
    assert not works_in_api(chosen)
    assert embedded_jobs_file(chosen) == "/var/lib/chatbots/jobs.db"
    assert embedded_jobs_file(settings(database_url=SQLITE)) == "./data/chatbots.db-jobs"
    with pytest.raises(ValueError, match="CHATBOTS_JOBS_SQLITE_PATH"):
        embedded_jobs_file(settings(database_url=POSTGRES, jobs_backend="embedded"))
    assert works_in_api(settings(database_url=POSTGRES, jobs_work_in_api=True))


@pytest.mark.parametrize(
    ("url", "engine"),
    [(SQLITE, EmbeddedJobs), (POSTGRES, DistributedJobs), ("memory://", InMemoryJobs)],
)
async def test_the_container_builds_the_selected_engine_without_connecting(
    url: str, engine: type
) -> None:
    container = build_container(settings(database_url=url))
    assert isinstance(container.jobs(), engine)
    await shutdown(container)  # closes an engine that never opened anything


def test_the_idempotency_key_purge_is_an_hourly_periodic_job() -> None:
    registry = build_container(settings(database_url="memory://")).job_registry()
    assert PURGE_IDEMPOTENCY_KEYS in registry
    assert registry.periodic == (PeriodicJob(PURGE_IDEMPOTENCY_KEYS, PURGE_IDEMPOTENCY_KEYS_CRON),)
    assert PURGE_IDEMPOTENCY_KEYS_CRON == "17 * * * *"


async def test_the_api_works_jobs_in_process_on_the_embedded_engine(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        create_embedded_schema(embedded_jobs_file(settings(database_url=url)))
        app = make_app(url, jobs_poll_seconds=0.05)
        container = app.state.container
        async for _client in client_for(app):
            engine = container.jobs()
            job_id = await engine.enqueue(PURGE_IDEMPOTENCY_KEYS)
            await wait_for_state(engine, job_id, JobState.DONE)
        assert engine._consumer is None  # the lifespan's end stopped the worker


async def test_the_api_serves_when_the_job_store_is_not_set_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_database(tmp_path) as url:  # alembic only, no `chatbots migrate`
        app = make_app(url)
        with caplog.at_level(logging.WARNING, logger="chatbots.jobs"):
            async for client in client_for(app):
                assert (await client.get("/healthz")).status_code == 200
        assert "run `chatbots migrate`" in caplog.text


@pytest.mark.postgres
async def test_the_api_only_enqueues_on_the_distributed_engine(jobs_postgres_url: str) -> None:
    app = make_app(jobs_postgres_url)
    async for _client in client_for(app):
        engine = app.state.container.jobs()
        assert engine._worker is None  # `chatbots worker` processes work the jobs
        job_id = await engine.enqueue(PURGE_IDEMPOTENCY_KEYS)
        status = await engine.status(job_id)
        assert status is not None
        assert status.state is JobState.QUEUED
