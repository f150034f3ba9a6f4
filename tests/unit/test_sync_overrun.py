"""A job whose previous copy may still run is never started again, by the same worker.

A sync (``def``) task's thread cannot be stopped: past its timeout, or past the shutdown
grace period, its job keeps its slot and lease (heartbeats go on) until the thread
returns (``attempt_overrun``). Only a forced stop gives up on the thread, and writes
nothing. A task that blocks the event loop is named (``loop_blocked``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from genqueue import App, FakeClock, JobState, RetryPolicy, Worker, WorkerSettings
from tests.conformance.helpers import Recorder
from tests.conftest import drain


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(clock: FakeClock) -> AsyncIterator[App]:
    application = App("memory://", clock=clock, retry=RetryPolicy(base_delay=0, jitter=0))
    async with application:
        yield application


class Copies:
    """Counts the copies of a task running at once, across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live = 0
        self.peak = 0
        self.runs = 0

    def __enter__(self) -> None:
        with self._lock:
            self.live += 1
            self.runs += 1
            self.peak = max(self.peak, self.live)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.live -= 1


async def until(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_sync_task_past_its_timeout_never_runs_twice_at_once(app: App) -> None:
    copies = Copies()

    @app.task("slow", timeout=0.05, max_retries=2)
    def slow(ctx):  # type: ignore[no-untyped-def]
        with copies:
            time.sleep(0.3)  # far past the timeout

    recorder = Recorder(app)
    job = await app.enqueue("slow", {})
    worker = await drain(app)
    assert copies.runs == 3 and copies.peak == 1
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.attempts == 3
    assert [a.error.kind.value for a in stored.history if a.error] == ["timeout"] * 3
    overruns = recorder.of("attempt_overrun")
    assert [(e["attempt"], e["reason"]) for e in overruns] == [
        (1, "timeout"),
        (2, "timeout"),
        (3, "timeout"),
    ]
    assert worker.stats == {"retrying": 2, "dead": 1, "overrun": 3}


async def test_a_sync_task_outlives_the_grace_period_under_its_lease(
    app: App, clock: FakeClock
) -> None:
    started, go_on = threading.Event(), threading.Event()
    copies = Copies()

    @app.task("paid")
    def paid(ctx):  # type: ignore[no-untyped-def]
        with copies:
            started.set()
            go_on.wait(10)
            return "generated"

    recorder = Recorder(app)
    job = await app.enqueue("paid", {})
    settings = WorkerSettings(
        poll_interval=0.01, shutdown_grace=0.05, lease_seconds=30, heartbeat_interval=0.02
    )
    worker = Worker(app, settings=settings)
    runner = asyncio.create_task(worker.run())
    await until(started.is_set, "the task to start")
    worker.request_stop()
    await until(lambda: bool(recorder.of("attempt_overrun")), "the grace period to end")
    assert [(e["job_id"], e["reason"]) for e in recorder.of("attempt_overrun")] == [
        (job.id, "shutdown")
    ]

    async def lease_until() -> float:
        held = await app.get(job.id)
        assert held.state is JobState.ACTIVE and held.lease_owner == worker.id
        assert held.lease_expires_at is not None
        return held.lease_expires_at

    for _ in range(2):  # 40 s in all, past the 30 s lease: heartbeats go on renewing it
        clock.advance(20)
        renewed = clock.now() + 30
        while await lease_until() != renewed:
            await asyncio.sleep(0.01)
    assert not runner.done()
    assert await app.backend.expired(10) == []  # nobody reclaims it
    assert await app.backend.fetch(["default"], "other-worker", 10, 30) == []
    go_on.set()
    await asyncio.wait_for(runner, 5)
    stored = await app.get(job.id)
    assert stored.state is JobState.COMPLETED and stored.result == "generated"
    assert copies.runs == 1


async def test_a_forced_stop_abandons_a_running_thread_and_writes_nothing(app: App) -> None:
    started, go_on = threading.Event(), threading.Event()

    @app.task("stuck")
    def stuck(ctx):  # type: ignore[no-untyped-def]
        started.set()
        go_on.wait(10)

    job = await app.enqueue("stuck", {})
    worker = Worker(app, settings=WorkerSettings(poll_interval=0.01, shutdown_grace=60))
    runner = asyncio.create_task(worker.run())
    try:
        await until(started.is_set, "the task to start")
        [thread] = [t for t in threading.enumerate() if t.name == f"genqueue-task-{job.id}"]
        assert thread.daemon  # it dies with the process, which is about to exit
        worker.request_stop()
        worker.request_stop()
        await asyncio.wait_for(runner, 5)
        assert thread.is_alive()
        stored = await app.get(job.id)
        # Not released while its thread runs: its lease expires and it is reclaimed.
        assert stored.state is JobState.ACTIVE and stored.history == []
    finally:
        go_on.set()


async def test_a_lost_lease_keeps_the_slot_until_the_thread_returns() -> None:
    clock = FakeClock()
    app = App("memory://", clock=clock)
    started, go_on = threading.Event(), threading.Event()
    copies = Copies()

    @app.task("sync")
    def sync(ctx):  # type: ignore[no-untyped-def]
        with copies:
            started.set()
            go_on.wait(10)

    @app.task("next")
    def next_job(ctx):  # type: ignore[no-untyped-def]
        with copies:
            return "ran"

    async with app:
        first = await app.enqueue("sync", {})
        second = await app.enqueue("next", {})
        settings = WorkerSettings(
            concurrency=1, poll_interval=0.01, lease_seconds=30, heartbeat_interval=0.02
        )
        worker = Worker(app, settings=settings)
        runner = asyncio.create_task(worker.run())
        await until(started.is_set, "the task to start")
        clock.advance(31)
        await until(lambda: worker.stats["lease_lost"] == 1, "the lease to be lost")
        await asyncio.sleep(0.1)
        assert (await app.get(second.id)).state is JobState.QUEUED  # the slot is still taken
        go_on.set()
        await until(lambda: copies.runs == 2, "the next job to run")
        worker.request_stop()
        await asyncio.wait_for(runner, 5)
        assert copies.peak == 1
        lost = await app.get(first.id)
        assert lost.state is JobState.ACTIVE and lost.history == []  # nothing written
        assert (await app.get(second.id)).state is JobState.COMPLETED


async def test_a_task_that_blocks_the_loop_is_named(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task("blocker")
    async def blocker(ctx):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # the mistake: blocking code in an async task

    recorder = Recorder(app)
    job = await app.enqueue("blocker", {})
    with caplog.at_level(logging.WARNING, logger="genqueue.worker"):
        await drain(app, loop_block_threshold=0.1)
    [warning] = [r for r in caplog.records if r.name == "genqueue.worker"]
    message = warning.getMessage()
    assert "event loop blocked" in message and job.id in message and "blocker" in message
    [event] = recorder.of("loop_blocked")
    assert event["job_id"] == job.id and event["task"] == "blocker"
    assert 0.4 <= event["seconds"] < 5


async def test_a_loop_that_keeps_running_is_not_reported(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task("polite")
    async def polite(ctx):  # type: ignore[no-untyped-def]
        for _ in range(20):
            await asyncio.sleep(0.02)

    recorder = Recorder(app)
    await app.enqueue("polite", {})
    with caplog.at_level(logging.WARNING, logger="genqueue.worker"):
        await drain(app, loop_block_threshold=0.2)
    assert recorder.of("loop_blocked") == []
    assert [r for r in caplog.records if r.name == "genqueue.worker"] == []
