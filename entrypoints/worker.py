"""Background jobs at the edge: which engine the settings select, its schema for
`chatbots migrate`, the API's in-process worker, and `chatbots worker`.

    database URL       engine (adapters/jobs/)                        worked by
    sqlite+aiosqlite   embedded: huey on `<database>-jobs`, durable   the API process (threads)
    postgresql+asyncpg distributed: procrastinate, PostgreSQL         `chatbots worker` processes
    memory://          in memory                                      the API process

`CHATBOTS_JOBS_BACKEND` overrides the choice; `CHATBOTS_JOBS_WORK_IN_API` where jobs are worked.
`chatbots worker` works any engine but the in-memory one (a second process on the same SQLite
file works it too).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from adapters.jobs import JobEngine, WorkerOptions
from application.jobs import JobQueueUnavailable, JobRegistry
from entrypoints.settings import JobsBackend, Settings

if TYPE_CHECKING:
    from entrypoints.bootstrap import Container

logger = logging.getLogger("chatbots.jobs")


def jobs_backend(settings: Settings) -> JobsBackend:
    if settings.jobs_backend is not JobsBackend.AUTO:
        return settings.jobs_backend
    if settings.uses_memory:
        return JobsBackend.MEMORY
    url = make_url(settings.database_url)
    if url.get_backend_name() == "postgresql":
        return JobsBackend.DISTRIBUTED
    if url.database in (None, "", ":memory:") and not settings.jobs_sqlite_path:
        return JobsBackend.MEMORY  # nothing on disk to be durable on
    return JobsBackend.EMBEDDED


def works_in_api(settings: Settings) -> bool:
    if settings.jobs_work_in_api is not None:
        return settings.jobs_work_in_api
    return jobs_backend(settings) is not JobsBackend.DISTRIBUTED


def embedded_jobs_file(settings: Settings) -> str:
    from adapters.jobs.embedded import jobs_file_for

    if settings.jobs_sqlite_path:
        return settings.jobs_sqlite_path
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError("the embedded job engine needs CHATBOTS_JOBS_SQLITE_PATH here")
    return jobs_file_for(url.database)


def worker_options(settings: Settings) -> WorkerOptions:
    from datetime import timedelta

    return WorkerOptions(
        concurrency=settings.jobs_concurrency,
        poll_interval=settings.jobs_poll_seconds,
        lease=settings.jobs_lease_seconds,
        grace=settings.jobs_grace_seconds,
        retention=timedelta(days=settings.jobs_retention_days),
    )


def build_job_engine(settings: Settings, registry: JobRegistry) -> JobEngine:
    """The engine the settings select; only its own library is imported."""
    backend, options = jobs_backend(settings), worker_options(settings)
    if backend is JobsBackend.DISTRIBUTED:
        from adapters.jobs.distributed import DistributedJobs

        return DistributedJobs(
            registry, settings.database_url, options, pool_size=settings.jobs_pool_size
        )
    if backend is JobsBackend.EMBEDDED:
        from adapters.jobs.embedded import EmbeddedJobs

        return EmbeddedJobs(registry, embedded_jobs_file(settings), options)
    from adapters.jobs.memory import InMemoryJobs

    return InMemoryJobs(registry, options)


def create_job_schema(settings: Settings) -> str:
    """The job engine's own tables (`chatbots migrate`); idempotent, nothing downloaded."""
    backend = jobs_backend(settings)
    if backend is JobsBackend.DISTRIBUTED:
        from adapters.jobs.distributed import create_distributed_schema

        done = asyncio.run(create_distributed_schema(settings.database_url))
        return f"job store (procrastinate): {done}"
    if backend is JobsBackend.EMBEDDED:
        from adapters.jobs.embedded import create_embedded_schema

        path = embedded_jobs_file(settings)
        create_embedded_schema(path)
        return f"job store (huey): {path}"
    return "job store: in memory, nothing to migrate"


async def start_jobs_in_api(container: Container) -> None:
    """The API's lifespan: work jobs in this process when the settings say so (the embedded
    default). `bootstrap.shutdown` stops them, running jobs first given the grace period."""
    if not works_in_api(container.settings()):
        return
    try:
        await container.jobs().start()
    except JobQueueUnavailable as error:
        logger.warning("background jobs are not worked in this process: %s", error)


async def work_until_stopped(container: Container, stop: asyncio.Event) -> None:
    from entrypoints.bootstrap import shutdown

    try:
        await container.jobs().start()
        logger.info("working %s jobs until SIGTERM or SIGINT", jobs_backend(container.settings()))
        await stop.wait()
    finally:
        await shutdown(container)


def run_worker() -> int:
    """`chatbots worker`: works jobs until SIGTERM or SIGINT, then lets running ones finish
    (up to `CHATBOTS_JOBS_GRACE_SECONDS`)."""
    from entrypoints.bootstrap import build_container

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    if jobs_backend(settings) is JobsBackend.MEMORY:
        print("error: the in-memory job engine is worked by the API process only", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await work_until_stopped(build_container(settings), stop)

    try:
        asyncio.run(main())
    except JobQueueUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
