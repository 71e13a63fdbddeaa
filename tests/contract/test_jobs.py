"""The job queue port: the same cases on every engine (in memory, embedded huey on a SQLite
file, distributed procrastinate on PostgreSQL), with sub-second polling and backoff.

Cases that need a store shared by two engines (durability across a restart, two workers on one
queue) run on the embedded and distributed engines; crashes and other processes are in
tests/integration/test_jobs_processes.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.jobs import JobEngine, WorkerOptions
from adapters.jobs.distributed import (
    SCHEMA,
    DistributedJobs,
    create_distributed_schema,
    libpq_conninfo,
    pending_migrations,
)
from adapters.jobs.embedded import EmbeddedJobs, create_embedded_schema
from adapters.jobs.memory import InMemoryJobs
from application.jobs import (
    JobKind,
    JobPayload,
    JobPayloadNotJson,
    JobRegistry,
    JobState,
    JobStatus,
    PeriodicJob,
    RetryPolicy,
    UnknownJobKind,
)
from tests.databases import IN_CI, PostgresUnavailable, postgres_database

pytestmark = pytest.mark.contract

FAST = WorkerOptions(concurrency=4, poll_interval=0.05, lease=1.5, grace=2.0)
ENGINES = ["memory", "embedded", pytest.param("distributed", marks=pytest.mark.postgres)]
SHARED_STORE_ENGINES = ["embedded", pytest.param("distributed", marks=pytest.mark.postgres)]
NEVER = "0 0 29 2 *"  # a cron that no worker's own periodic deferrer reaches during a test
LEAP_DAY = datetime(2028, 2, 29, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def jobs_postgres_url() -> Iterator[str]:
    try:
        with postgres_database() as url, ThreadPoolExecutor(1) as thread:
            # Its own loop in its own thread, apart from the tests' running loop.
            thread.submit(asyncio.run, create_distributed_schema(url)).result()
            yield url
    except PostgresUnavailable as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {error}", pytrace=False)
        pytest.skip(str(error))


async def _empty_job_tables(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_conninfo(url), autocommit=True) as c:
        await c.execute(
            f"TRUNCATE {SCHEMA}.procrastinate_jobs, {SCHEMA}.procrastinate_workers, "
            f"{SCHEMA}.procrastinate_periodic_defers, {SCHEMA}.procrastinate_events, "
            f"{SCHEMA}.chatbots_job_errors CASCADE"
        )


EngineFactory = Callable[..., JobEngine]


@pytest.fixture
async def engines(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., JobEngine]]:
    """Builds engines of the parametrised kind, all on one store (one file, one database), and
    closes them after the test."""
    kind: str = request.param
    built: list[JobEngine] = []
    memory: InMemoryJobs | None = None
    path = str(tmp_path / "chatbots.db-jobs")
    if kind == "embedded":
        create_embedded_schema(path)
    elif kind == "distributed":
        url = request.getfixturevalue("jobs_postgres_url")
        await _empty_job_tables(url)

    def build(registry: JobRegistry, options: WorkerOptions = FAST) -> JobEngine:
        nonlocal memory
        engine: JobEngine
        if kind == "memory":
            assert memory is None, "one in-memory engine per test: it is its own store"
            engine = memory = InMemoryJobs(registry, options)
        elif kind == "embedded":
            engine = EmbeddedJobs(registry, path, options)
        else:
            engine = DistributedJobs(registry, url, options, pool_size=4)
        built.append(engine)
        return engine

    yield build
    for engine in built:
        await engine.aclose()


def engine_param(kinds: list[Any]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("engines", kinds, indirect=True)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.02)


async def wait_for_state(
    engine: JobEngine, job_id: str, state: JobState, within: float = 5.0
) -> JobStatus:
    async def reached() -> bool:
        status = await engine.status(job_id)
        return status is not None and status.state is state

    await eventually(reached, within, f"job {job_id} {state}")
    status = await engine.status(job_id)
    assert status is not None
    return status


class Recorder:
    """Handlers that record what they were given, when, and how many ran at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, JobPayload, float]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    def kind(self, name: str, *, fail_times: int = 0, **policy: Any) -> JobKind:
        async def handler(payload: JobPayload) -> None:
            self.calls.append((name, payload, time.monotonic()))
            if len([c for c in self.calls if c[0] == name]) <= fail_times:
                raise RuntimeError(f"boom {len(self.calls)}")

        return JobKind(name, handler, RetryPolicy(**policy))

    def blocking(self, name: str) -> JobKind:
        async def handler(payload: JobPayload) -> None:
            self.calls.append((name, payload, time.monotonic()))
            self.started.set()
            await self.release.wait()

        return JobKind(name, handler, RetryPolicy(max_attempts=3, first_delay=timedelta(0)))

    def slow(self, name: str, seconds: float) -> JobKind:
        async def handler(payload: JobPayload) -> None:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.calls.append((name, payload, time.monotonic()))
            await asyncio.sleep(seconds)
            self.running -= 1

        return JobKind(name, handler)

    def payloads(self, name: str) -> list[JobPayload]:
        return [payload for kind, payload, _ in self.calls if kind == name]


# --- the retry policy itself ----------------------------------------------------------------


def test_backoff_doubles_up_to_the_max_delay_and_stops_at_max_attempts() -> None:
    policy = RetryPolicy(
        max_attempts=5, first_delay=timedelta(seconds=10), max_delay=timedelta(seconds=30)
    )
    delays = [policy.retry_delay(n, timedelta(0)) for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (10, 20, 30, 30)] + [None]


def test_no_retry_would_start_past_the_max_age() -> None:
    policy = RetryPolicy(
        max_attempts=100, first_delay=timedelta(hours=1), max_age=timedelta(days=1)
    )
    assert policy.retry_delay(1, timedelta(hours=22)) == timedelta(hours=1)
    assert policy.retry_delay(1, timedelta(hours=23, minutes=30)) is None


def test_a_registry_refuses_duplicates_and_schedules_of_unknown_kinds() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="twice"):
        JobRegistry([recorder.kind("a"), recorder.kind("a")])
    with pytest.raises(ValueError, match="undeclared"):
        JobRegistry([recorder.kind("a")], [PeriodicJob("b", "* * * * *")])
    with pytest.raises(ValueError, match="five fields"):
        JobRegistry([recorder.kind("a")], [PeriodicJob("a", "* * * *")])
    merged = JobRegistry.merge(JobRegistry([recorder.kind("a")]), JobRegistry([recorder.kind("b")]))
    assert [kind.name for kind in merged] == ["a", "b"]


def test_procrastinate_migrations_newer_than_the_recorded_level_are_pending() -> None:
    available = ["03.03.00_01_pre_x", "03.04.00_01_pre_y", "03.04.00_50_post_y"]
    assert pending_migrations("03.03.00_01_pre_x", available) == available[1:]
    assert pending_migrations("03.04.00_50_post_y", available) == []
    assert pending_migrations("03.04.00_50_post_add_retry_failed_job_procedure") == []


# --- every engine ---------------------------------------------------------------------------


@engine_param(ENGINES)
async def test_a_job_runs_once_and_its_handler_sees_the_payload(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    engine = engines(JobRegistry([recorder.kind("greet")]))
    await engine.start()
    job_id = await engine.enqueue("greet", {"name": "Ada", "ids": (1, 2), "nested": {"ok": True}})
    status = await wait_for_state(engine, job_id, JobState.DONE)
    await asyncio.sleep(0.2)  # long enough for a duplicate run to show
    assert recorder.payloads("greet") == [{"name": "Ada", "ids": [1, 2], "nested": {"ok": True}}]
    assert status == JobStatus(job_id, "greet", JobState.DONE, 1, None)


@engine_param(ENGINES)
async def test_a_failing_handler_is_retried_with_backoff_then_marked_failed(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    kind = recorder.kind(
        "flaky", fail_times=99, max_attempts=3, first_delay=timedelta(seconds=0.2), factor=2
    )
    engine = engines(JobRegistry([kind]))
    await engine.start()
    job_id = await engine.enqueue("flaky", {})
    status = await wait_for_state(engine, job_id, JobState.FAILED, within=8)
    times = [at for _, _, at in recorder.calls]
    assert len(times) == 3
    first_wait, second_wait = times[1] - times[0], times[2] - times[1]
    assert first_wait >= 0.18, first_wait
    assert second_wait >= 0.38, second_wait  # doubled
    assert status.attempts == 3
    assert status.last_error == "RuntimeError: boom 3"


@engine_param(ENGINES)
async def test_a_retry_that_succeeds_is_done_and_keeps_the_last_error(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    kind = recorder.kind("once", fail_times=1, first_delay=timedelta(seconds=0.05))
    engine = engines(JobRegistry([kind]))
    await engine.start()
    job_id = await engine.enqueue("once")
    status = await wait_for_state(engine, job_id, JobState.DONE)
    assert (status.attempts, status.last_error) == (2, "RuntimeError: boom 1")


@engine_param(ENGINES)
async def test_retries_stop_once_the_job_is_older_than_its_max_age(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    kind = recorder.kind(
        "aging",
        fail_times=99,
        max_attempts=50,
        first_delay=timedelta(seconds=0.2),
        max_age=timedelta(seconds=0.5),
    )
    engine = engines(JobRegistry([kind]))
    await engine.start()
    job_id = await engine.enqueue("aging")
    status = await wait_for_state(engine, job_id, JobState.FAILED)
    # Attempt 1 at 0 s, attempt 2 at 0.2 s; a third at 0.6 s would start past 0.5 s.
    assert status.attempts == 2


@engine_param(ENGINES)
async def test_status_moves_from_queued_to_running_to_done(engines: EngineFactory) -> None:
    recorder = Recorder()
    engine = engines(JobRegistry([recorder.blocking("wait")]))
    job_id = await engine.enqueue("wait", {"step": 1})
    assert await engine.status(job_id) == JobStatus(job_id, "wait", JobState.QUEUED, 0, None)
    await engine.start()
    running = await wait_for_state(engine, job_id, JobState.RUNNING)
    assert running.attempts == 1
    recorder.release.set()
    done = await wait_for_state(engine, job_id, JobState.DONE)
    assert done.attempts == 1
    assert await engine.status("no-such-job") is None
    assert await engine.status("123456789") is None


@engine_param(ENGINES)
async def test_a_delayed_job_does_not_run_early(engines: EngineFactory) -> None:
    recorder = Recorder()
    engine = engines(JobRegistry([recorder.kind("later")]))
    await engine.start()
    enqueued = time.monotonic()
    by_delay = await engine.enqueue("later", {"by": "delay"}, delay=timedelta(seconds=0.6))
    by_time = await engine.enqueue(
        "later", {"by": "run_at"}, run_at=datetime.now(UTC) + timedelta(seconds=0.6)
    )
    await asyncio.sleep(0.4)
    assert recorder.calls == []
    assert (await engine.status(by_delay)).state is JobState.QUEUED  # type: ignore[union-attr]
    await wait_for_state(engine, by_delay, JobState.DONE)
    await wait_for_state(engine, by_time, JobState.DONE)
    assert all(at - enqueued >= 0.58 for _, _, at in recorder.calls)
    assert sorted(p["by"] for p in recorder.payloads("later")) == ["delay", "run_at"]


@engine_param(ENGINES)
async def test_a_dedup_key_holds_while_its_job_waits_for_its_first_attempt(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    engine = engines(JobRegistry([recorder.blocking("sync")]))
    first = await engine.enqueue("sync", {"n": 1}, dedup_key="bot-7")
    assert await engine.enqueue("sync", {"n": 2}, dedup_key="bot-7") == first
    other = await engine.enqueue("sync", {"n": 3}, dedup_key="bot-8")
    assert other != first
    await engine.start()
    await wait_for_state(engine, first, JobState.RUNNING)
    after_start = await engine.enqueue("sync", {"n": 4}, dedup_key="bot-7")
    assert after_start not in (first, other)
    recorder.release.set()
    for job_id in (first, other, after_start):
        await wait_for_state(engine, job_id, JobState.DONE)
    assert sorted(p["n"] for p in recorder.payloads("sync")) == [1, 3, 4]


@engine_param(ENGINES)
async def test_enqueue_refuses_unknown_kinds_payloads_that_are_not_json_and_naive_times(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    engine = engines(JobRegistry([recorder.kind("known")]))
    with pytest.raises(UnknownJobKind):
        await engine.enqueue("unknown", {})
    with pytest.raises(JobPayloadNotJson):
        await engine.enqueue("known", {"when": datetime.now(UTC)})
    with pytest.raises(JobPayloadNotJson):
        await engine.enqueue("known", {"x": float("nan")})
    with pytest.raises(ValueError, match="aware"):
        await engine.enqueue("known", run_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        await engine.enqueue(
            "known", delay=timedelta(seconds=1), run_at=datetime.now(UTC) + timedelta(seconds=1)
        )


@engine_param(ENGINES)
async def test_stopping_interrupts_a_job_past_the_grace_period_and_queues_it_again(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    quick_grace = WorkerOptions(concurrency=2, poll_interval=0.05, lease=1.5, grace=0.3)
    engine = engines(JobRegistry([recorder.blocking("long")]), quick_grace)
    job_id = await engine.enqueue("long")
    await engine.start()
    await wait_for_state(engine, job_id, JobState.RUNNING)
    await engine.stop()
    status = await engine.status(job_id)
    assert status is not None
    assert (status.state, status.attempts) == (JobState.QUEUED, 1)
    assert "interrupted" in (status.last_error or "")
    recorder.release.set()  # the next run finishes at once
    await engine.start()
    done = await wait_for_state(engine, job_id, JobState.DONE)
    assert done.attempts == 2


@engine_param(ENGINES)
async def test_a_periodic_job_is_enqueued_once_per_tick(engines: EngineFactory) -> None:
    recorder = Recorder()
    registry = JobRegistry([recorder.kind("tick")], [PeriodicJob("tick", NEVER, {"p": 1})])
    first, second = engines(registry), None
    if not isinstance(first, InMemoryJobs):
        second = engines(registry)  # a second worker on the same store, at the same tick
    for engine in (first, second, first):
        if engine is not None:
            await tick(engine, LEAP_DAY)
    await first.start()
    await eventually(lambda: _true(recorder.calls), what="the periodic job ran")
    await asyncio.sleep(0.3)
    assert recorder.payloads("tick") == [{"p": 1}]


async def _true(value: object) -> bool:
    return bool(value)


async def tick(engine: JobEngine, moment: datetime) -> None:
    """What each engine's scheduler does when the clock reaches `moment`."""
    if isinstance(engine, InMemoryJobs):
        engine._enqueue_periodic(moment)
    elif isinstance(engine, EmbeddedJobs):
        await asyncio.to_thread(engine.enqueue_periodic, moment)
    else:
        assert isinstance(engine, DistributedJobs)
        from procrastinate.periodic import PeriodicDeferrer

        await engine._open()
        registry = engine.app.periodic_registry
        deferrer = PeriodicDeferrer(registry=registry)
        due = [
            (task, int(moment.timestamp()))
            for task in registry.periodic_tasks.values()
            if task.task.name != "chatbots.jobs.sweep"
        ]
        await deferrer.defer_jobs(due)


@engine_param(ENGINES)
async def test_finished_jobs_are_forgotten_after_the_retention_period(
    engines: EngineFactory,
) -> None:
    recorder = Recorder()
    forgetful = WorkerOptions(concurrency=2, poll_interval=0.05, retention=timedelta(0))
    kinds = [recorder.kind("ok"), recorder.kind("ko", fail_times=1, max_attempts=1)]
    engine = engines(JobRegistry(kinds), forgetful)
    waiting = await engine.enqueue("ok", delay=timedelta(hours=1))
    await engine.start()
    done, failed = await engine.enqueue("ok"), await engine.enqueue("ko")

    async def both_finished() -> bool:  # or forgotten already, by the worker's own sweep
        statuses = [await engine.status(job_id) for job_id in (done, failed)]
        return all(s is None or s.state in (JobState.DONE, JobState.FAILED) for s in statuses)

    await eventually(both_finished, what="both jobs finished")
    await asyncio.sleep(1.05)  # procrastinate keeps time in whole seconds here
    await sweep(engine)
    assert await engine.status(done) is None
    assert await engine.status(failed) is None
    assert (await engine.status(waiting)) == JobStatus(waiting, "ok", JobState.QUEUED, 0, None)


# --- engines with a store of their own ------------------------------------------------------


@engine_param(SHARED_STORE_ENGINES)
async def test_a_job_enqueued_before_a_restart_runs_after_it(engines: EngineFactory) -> None:
    recorder = Recorder()
    registry = JobRegistry([recorder.kind("survive")])
    before = engines(registry)
    now_id = await before.enqueue("survive", {"when": "now"})
    later_id = await before.enqueue("survive", {"when": "later"}, delay=timedelta(seconds=0.3))
    await before.aclose()  # never worked: the process stops with both jobs queued

    after = engines(registry)
    await after.start()
    await wait_for_state(after, now_id, JobState.DONE)
    await wait_for_state(after, later_id, JobState.DONE)
    assert sorted(p["when"] for p in recorder.payloads("survive")) == ["later", "now"]


@engine_param(SHARED_STORE_ENGINES)
async def test_two_workers_never_run_the_same_job_attempt(engines: EngineFactory) -> None:
    recorder = Recorder()
    registry = JobRegistry([recorder.slow("share", 0.02)])
    first, second = engines(registry), engines(registry)
    ids = [await first.enqueue("share", {"n": n}) for n in range(40)]
    await asyncio.gather(first.start(), second.start())
    for job_id in ids:
        await wait_for_state(first, job_id, JobState.DONE, within=15)
    await asyncio.sleep(0.2)
    assert sorted(p["n"] for p in recorder.payloads("share")) == list(range(40))
    assert 1 < recorder.most_at_once <= 8  # both workers, four at a time each


@engine_param(SHARED_STORE_ENGINES)
async def test_a_job_left_running_by_a_lost_worker_runs_again(engines: EngineFactory) -> None:
    """The lost worker here is one whose lease (heartbeat) stops; a killed process is in
    tests/integration/test_jobs_processes.py."""
    recorder = Recorder()
    slow_to_notice = WorkerOptions(concurrency=1, poll_interval=0.05, lease=60, grace=0.2)
    lost = engines(JobRegistry([recorder.blocking("work")]), slow_to_notice)
    job_id = await lost.enqueue("work", {"n": 1})
    await lost.start()
    await wait_for_state(lost, job_id, JobState.RUNNING)
    await expire_lease(lost, job_id)

    survivor = engines(JobRegistry([recorder.kind("work", first_delay=timedelta(0))]))
    await sweep(survivor)
    status = await survivor.status(job_id)
    assert status is not None
    assert status.state is JobState.QUEUED
    assert status.last_error == "the worker was lost while it ran attempt 1"
    await survivor.start()
    done = await wait_for_state(survivor, job_id, JobState.DONE)
    assert done.attempts == 2
    recorder.release.set()  # the lost worker wakes up late: its outcome no longer counts
    await asyncio.sleep(0.2)
    assert (await survivor.status(job_id)) == done


async def expire_lease(engine: JobEngine, job_id: str) -> None:
    """What the store looks like once a worker has been silent for longer than its lease."""
    if isinstance(engine, EmbeddedJobs):
        lease = {"at": time.time() - 1, "attempt": 1}
        engine._storage.put_data(f"lease:{job_id}", json.dumps(lease).encode())
    else:
        assert isinstance(engine, DistributedJobs)
        await engine.connector.execute_query_async(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
        )


async def sweep(engine: JobEngine) -> None:
    if isinstance(engine, EmbeddedJobs):
        await asyncio.to_thread(engine.sweep)
    else:
        assert isinstance(engine, DistributedJobs | InMemoryJobs)
        await engine.sweep()


@pytest.mark.parametrize("attempts_left", [True, False])
@engine_param(SHARED_STORE_ENGINES)
async def test_a_lost_last_attempt_fails_the_job(
    engines: EngineFactory, attempts_left: bool
) -> None:
    recorder = Recorder()
    policy = {"max_attempts": 2 if attempts_left else 1, "first_delay": timedelta(0)}
    kind = JobKind("fragile", recorder.blocking("fragile").handler, RetryPolicy(**policy))
    slow_to_notice = WorkerOptions(concurrency=1, poll_interval=0.05, lease=60, grace=0.2)
    lost = engines(JobRegistry([kind]), slow_to_notice)
    job_id = await lost.enqueue("fragile")
    await lost.start()
    await wait_for_state(lost, job_id, JobState.RUNNING)
    await expire_lease(lost, job_id)
    await sweep(engines(JobRegistry([kind])))
    status = await lost.status(job_id)
    assert status is not None
    assert status.state is (JobState.QUEUED if attempts_left else JobState.FAILED)
    recorder.release.set()


async def test_the_embedded_scheduler_enqueues_a_tick_that_falls_between_two_of_its_checks(
    tmp_path: Path,
) -> None:
    """huey's scheduler looks about every 60 s: one look at 00:16:59.9 and the next at 00:18:00.2
    must still enqueue the job of 00:17."""
    path = str(tmp_path / "jobs.db")
    create_embedded_schema(path)
    recorder = Recorder()
    registry = JobRegistry([recorder.kind("tick")], [PeriodicJob("tick", "17 0 * * *")])
    engine = EmbeddedJobs(registry, path, FAST)
    try:
        start = datetime(2030, 1, 1, 0, 16, 59, 900000, tzinfo=UTC)
        await asyncio.to_thread(engine.enqueue_periodic, start)
        await asyncio.to_thread(engine.enqueue_periodic, start + timedelta(seconds=60.3))
        await engine.start()
        await eventually(lambda: _true(recorder.calls), what="the 00:17 job ran")
    finally:
        await engine.aclose()
