"""Leases: heartbeats, fencing, recovery of lost workers, graceful shutdown."""

from __future__ import annotations

import asyncio

import pytest

from genqueue import App, AttemptOutcome, ErrorKind, FakeClock, JobState, Worker, WorkerSettings
from genqueue.backends.base import Lease, Move, RunningUpdate
from tests.conformance.helpers import Recorder
from tests.conftest import FAST, drain


def register(app: App) -> list[int]:
    calls: list[int] = []

    @app.task("gen")
    async def gen(ctx):  # type: ignore[no-untyped-def]
        calls.append(ctx.attempt)
        return "ok"

    return calls


async def ghost_fetch(app: App, lease: float = 30) -> list:  # type: ignore[type-arg]
    """A worker that fetches and then dies without a word."""
    return await app.backend.fetch(["default"], "ghost-worker", 10, lease)


async def test_fetch_claims_under_a_lease(app: App, clock: FakeClock) -> None:
    register(app)
    job = await app.enqueue("gen", {})
    [claimed] = await ghost_fetch(app, lease=30)
    assert claimed.id == job.id and claimed.state is JobState.ACTIVE
    assert claimed.attempts == 1 and claimed.lease_owner == "ghost-worker"
    assert claimed.lease_expires_at == clock.now() + 30 and claimed.started_at == clock.now()
    assert await ghost_fetch(app) == []  # not fetched twice while leased


async def test_heartbeat_extends_only_live_leases(app: App, clock: FakeClock) -> None:
    register(app)
    await app.enqueue("gen", {})
    [job] = await ghost_fetch(app, lease=30)
    clock.advance(20)
    assert await app.backend.heartbeat([Lease(job.id, job.attempts)], 30) == []
    assert (await app.get(job.id)).lease_expires_at == clock.now() + 30
    assert await app.backend.heartbeat([Lease(job.id, job.attempts + 1)], 30) == [
        job.id
    ]  # wrong token
    clock.advance(31)
    assert await app.backend.heartbeat([Lease(job.id, job.attempts)], 30) == [job.id]  # expired


async def test_lost_worker_job_is_recovered_and_counts_as_an_attempt(
    app: App, clock: FakeClock
) -> None:
    calls = register(app)
    recorder = Recorder(app)
    job = await app.enqueue("gen", {})
    await ghost_fetch(app, lease=30)
    await drain(app)
    assert calls == [] and (await app.get(job.id)).state is JobState.ACTIVE  # lease still valid
    clock.advance(30)
    await drain(app)  # reclaims: retrying after the backoff
    stored = await app.get(job.id)
    assert stored.state is JobState.RETRYING and stored.retry_count == 1
    [attempt] = stored.history
    assert attempt.error is not None and attempt.error.kind is ErrorKind.WORKER_LOST
    assert attempt.worker == "ghost-worker" and "stopped renewing" in attempt.error.message
    clock.advance(5)
    await drain(app)
    done = await app.get(job.id)
    assert done.state is JobState.COMPLETED and calls == [2] and done.attempts == 2
    assert "queue_retry" in recorder.names()


async def test_a_job_that_kills_its_worker_every_time_ends_in_the_dlq(
    app: App, clock: FakeClock
) -> None:
    register(app)
    job = await app.enqueue("gen", {})
    for _ in range(2):
        assert len(await ghost_fetch(app, lease=10)) == 1
        clock.advance(10)
        await Worker(app, burst=True, settings=FAST).reclaim()
        clock.advance(3600)
        await app.backend.promote(10)
    entry = await app.dlq.get(job.id)
    assert (
        entry.error_kind is ErrorKind.WORKER_LOST
        and entry.reason == "retries exhausted (1 of 1 used)"
    )
    assert entry.job.attempts == 2 and [a.outcome for a in entry.history] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.DEAD,
    ]


async def test_a_zombie_cannot_write_after_losing_its_lease(app: App, clock: FakeClock) -> None:
    register(app)
    await app.enqueue("gen", {})
    [zombie_view] = await ghost_fetch(app, lease=10)
    clock.advance(10)
    await Worker(app, burst=True, settings=FAST).reclaim()
    completed = await app.get(zombie_view.id)
    completed.state = JobState.COMPLETED
    assert await app.backend.move([Move(completed, JobState.ACTIVE, zombie_view.attempts)]) == [
        False
    ]
    lease = Lease(zombie_view.id, zombie_view.attempts)
    assert not await app.backend.update_running(lease, RunningUpdate(remote_job_id="r-1"))
    assert (await app.get(zombie_view.id)).state is JobState.RETRYING


async def test_reclaim_does_not_race_a_live_worker(app: App, clock: FakeClock) -> None:
    register(app)
    await app.enqueue("gen", {})
    [job] = await ghost_fetch(app, lease=10)
    expired_view = await app.get(job.id)
    assert await app.backend.heartbeat([Lease(job.id, job.attempts)], 10) == []
    clock.advance(5)
    # A reclaim computed from a stale view must not apply while the lease is live.
    retry = await app.get(job.id)
    retry.state = JobState.RETRYING
    move = Move(retry, JobState.ACTIVE, expired_view.attempts, require_expired_lease=True)
    assert await app.backend.move([move]) == [False]


async def test_remote_id_is_written_ahead(app: App) -> None:
    seen = []

    @app.task("remote")
    async def remote(ctx):  # type: ignore[no-untyped-def]
        await ctx.set_remote_job_id("pl-123", submitted=True)
        seen.append((await ctx.app.get(ctx.id)).remote_job_id)
        return None

    job = await app.enqueue("remote", {})
    await drain(app)
    assert seen == ["pl-123"]
    stored = await app.get(job.id)
    assert stored.remote_job_id == "pl-123" and stored.meta["submitted"] is True


async def test_a_lease_lost_while_storing_a_remote_id_keeps_its_cost_and_remote_id(
    app: App, clock: FakeClock
) -> None:
    # Found by the model test (tests/model): the context's LeaseLost was classified as
    # the task's `unknown` failure and, with the job still active, dead-lettered it. Then
    # it wrote nothing and the reclaimer recorded a bare `worker_lost`: the paid submit's
    # cost and remote id were gone, and the next attempt would have paid again.
    recorder = Recorder(app)
    seen: list[str | None] = []

    @app.task("stalls")
    async def stalls(ctx):  # type: ignore[no-untyped-def]
        seen.append(ctx.job.remote_job_id)
        if ctx.attempt == 1:
            ctx.add_cost(usd=0.02)
            clock.advance(31)  # stalled past its lease before any heartbeat renewed it
            await ctx.set_remote_job_id("pl-1")
        return "ok"

    job = await app.enqueue("stalls", {})
    worker = await drain(app)
    stored = await app.get(job.id)
    assert worker.stats["lease_lost"] == 1
    assert recorder.of("job_lease_lost")[0]["job_id"] == job.id
    assert stored.state is JobState.RETRYING and await app.backend.dlq_get(job.id) is None
    assert stored.last_error is not None and stored.last_error.kind is ErrorKind.WORKER_LOST
    assert stored.remote_job_id == "pl-1" and stored.cost == {"usd": 0.02}
    attempt = stored.history[-1]
    assert attempt.details["cost"] == {"usd": 0.02}
    assert attempt.details["remote_job_id"] == "pl-1"
    assert await Worker(app, burst=True, settings=FAST).reclaim() == 0  # nothing left to do
    clock.advance(5)
    await drain(app)
    assert (await app.get(job.id)).state is JobState.COMPLETED
    assert seen == [None, "pl-1"]  # the second attempt resumes the remote job


async def test_a_lease_lost_after_another_worker_took_the_job_writes_nothing(
    app: App, clock: FakeClock
) -> None:
    taken = asyncio.Event()

    @app.task("slow")
    async def slow(ctx):  # type: ignore[no-untyped-def]
        if ctx.attempt == 1:
            clock.advance(31)
            # Another worker reclaims the job before this attempt writes again.
            assert await Worker(app, burst=True, settings=FAST).reclaim() == 1
            taken.set()
            await ctx.set_meta(late=True)
        return "ok"

    job = await app.enqueue("slow", {})
    worker = await drain(app)
    stored = await app.get(job.id)
    assert taken.is_set() and worker.stats["lease_lost"] == 1 and worker.stats["discarded"] == 1
    assert len(stored.history) == 1 and "late" not in stored.meta
    assert stored.history[0].error is not None
    assert stored.history[0].error.kind is ErrorKind.WORKER_LOST


async def test_graceful_shutdown_releases_unfinished_jobs(app: App) -> None:
    started = asyncio.Event()

    @app.task("long")
    async def long(ctx):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(60)

    @app.task("short")
    async def short(ctx):  # type: ignore[no-untyped-def]
        await started.wait()
        await asyncio.sleep(0.05)
        return "done"

    slow_job = await app.enqueue("long", {})
    quick_job = await app.enqueue("short", {})
    worker = Worker(
        app, settings=WorkerSettings(concurrency=2, poll_interval=0.01, shutdown_grace=0.3)
    )
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.request_stop()
    await asyncio.wait_for(runner, 5)
    quick = await app.get(quick_job.id)
    assert quick.state is JobState.COMPLETED  # finished within the grace period
    slow = await app.get(slow_job.id)
    assert slow.state is JobState.QUEUED and slow.retry_count == 0
    assert slow.history[-1].outcome is AttemptOutcome.INTERRUPTED


async def test_second_stop_request_releases_at_once(app: App) -> None:
    started = asyncio.Event()

    @app.task("long")
    async def long(ctx):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(60)

    job = await app.enqueue("long", {})
    worker = Worker(
        app, settings=WorkerSettings(concurrency=1, poll_interval=0.01, shutdown_grace=60)
    )
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.request_stop()
    worker.request_stop()
    await asyncio.wait_for(runner, 5)
    assert (await app.get(job.id)).state is JobState.QUEUED


async def test_waiting_for_work_wakes_on_enqueue(app: App) -> None:
    register(app)
    # Far longer than the test may take: only a wake-up ends the wait in time.
    waiter = asyncio.create_task(app.backend.wait_for_work(["default"], 60))
    await asyncio.sleep(0.3)  # it is waiting (and, on Redis, subscribed) by now
    assert not waiter.done()
    await app.enqueue("gen", {})
    await asyncio.wait_for(waiter, 10)


async def test_waiting_for_work_wakes_on_another_process_enqueue(
    app: App, backend_kind: str
) -> None:
    if backend_kind == "memory":
        pytest.skip("the memory backend is private to one process")
    register(app)
    producer = App(app.backend.url, clock=app.clock, strict_tasks=False)
    async with producer:
        waiter = asyncio.create_task(app.backend.wait_for_work(["default"], 60))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await producer.enqueue("gen", {})
        await asyncio.wait_for(waiter, 10)


async def test_cost_can_be_stored_before_the_attempt_ends(app: App) -> None:
    seen = []

    @app.task("paid")
    async def paid(ctx):  # type: ignore[no-untyped-def]
        ctx.add_cost(usd=0.25, generations=2)
        await ctx.save_cost()  # a crash from here on cannot lose what was spent
        seen.append((await ctx.app.get(ctx.id)).cost)
        ctx.add_cost(usd=0.25)
        return None

    job = await app.enqueue("paid", {})
    await drain(app)
    assert seen == [{"usd": 0.25, "generations": 2.0}]
    stored = await app.get(job.id)
    assert stored.cost == {"usd": 0.5, "generations": 2.0}
    assert stored.history[-1].details["cost"] == {"usd": 0.5, "generations": 2.0}
