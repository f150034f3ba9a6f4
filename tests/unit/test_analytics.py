"""Analytics over a window: the rates the report asked for, from per-minute tallies."""

from __future__ import annotations

import pytest

from genqueue import App, ErrorKind, FakeClock, JobContext, RetryPolicy, TaskError
from genqueue.analytics import series
from genqueue.clock import FAKE_CLOCK_START
from genqueue.testing import run_until_idle


def make_app(clock: FakeClock, url: str = "memory://") -> tuple[App, set[str]]:
    app = App(url, clock=clock, retry=RetryPolicy(max_retries=1, base_delay=1, jitter=0))
    healed: set[str] = set()

    @app.task("flaky", queue="q")
    async def flaky(ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise TaskError("503 Service Unavailable", kind=ErrorKind.SERVER)

    @app.task("down", queue="q")
    async def down(ctx: JobContext) -> None:
        if ctx.id not in healed:
            raise TaskError("connection refused", kind=ErrorKind.NETWORK)

    @app.task("bad", queue="q")
    async def bad(ctx: JobContext) -> None:
        raise TaskError("prompt too long", kind=ErrorKind.VALIDATION)

    return app, healed


async def run(app: App, clock: FakeClock) -> None:
    await run_until_idle(app)
    clock.advance(5)  # retries are due
    await run_until_idle(app)


async def test_rates_over_a_window(tmp_path: object) -> None:
    clock = FakeClock()
    app, healed = make_app(clock)
    async with app:
        for task, n in (("flaky", 4), ("down", 3), ("bad", 2)):
            for i in range(n):
                await app.enqueue(task, {"i": i})
        await run(app, clock)
        dead_down = [e.job_id for e in (await app.dlq.list()).items if e.task == "down"]
        healed.update(dead_down[:2])  # two of the three get better
        for job_id in dead_down:
            await app.dlq.redrive(job_id)
        await run(app, clock)
        report = await app.analytics(window=3600)

    flaky, down, bad = (report.by_task[t] for t in ("flaky", "down", "bad"))
    assert (flaky.retried, flaky.completed_after_retry, flaky.retry_success_rate) == (4, 4, 1.0)
    # down: all 3 retried and dead; redriven, two complete at once and the third is
    # retried (again: a redrive starts the retry count afresh) and dies again.
    assert (down.redriven, down.redrive_succeeded, down.redrive_success_rate) == (3, 2, 0.6667)
    assert (down.dead, down.succeeded, down.retried, down.completed_after_retry) == (4, 2, 4, 0)
    assert down.retry_success_rate == 0.0
    assert (bad.dead, bad.failure_rate, bad.retried, bad.retry_rate) == (2, 1.0, 0, 0.0)
    assert [g.count for g in bad.top_fingerprints] == [2]
    assert "prompt too long" in bad.top_fingerprints[0].sample_message
    total = report.total
    assert total.succeeded == 4 + 2 and total.dead == 4 + 2
    assert total.retried == 4 + 4
    assert total.retry_success_rate == 0.5
    assert total.failure_rate == round(6 / 12, 4)
    assert total.attempts == flaky.attempts + down.attempts + bad.attempts == 8 + 10 + 2


async def test_the_window_forgets_older_minutes() -> None:
    clock = FakeClock()
    app, _ = make_app(clock)
    async with app:
        await app.enqueue("bad", {})
        await run(app, clock)
        assert (await app.analytics(window=600)).total.dead == 1
        clock.advance(2 * 3600)
        await app.enqueue("flaky", {})
        await run(app, clock)
        report = await app.analytics(window=3600)
        assert (report.total.dead, report.total.succeeded) == (0, 1)
        assert (await app.analytics(window=4 * 3600)).total.dead == 1
        with pytest.raises(ValueError, match="window"):
            await app.analytics(window=10)


async def test_counts_of_one_process_reach_another_through_the_backend(tmp_path: object) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/a.db"
    worker_app, _ = make_app(clock, url)
    async with worker_app:
        await worker_app.enqueue("bad", {})
        await run(worker_app, clock)
    reader, _ = make_app(clock, url)  # another process: only the backend is shared
    async with reader:
        assert (await reader.analytics(window=3600)).by_task["bad"].dead == 1


async def test_series_counts_each_minute() -> None:
    clock = FakeClock()  # 2026-01-01T00:00:00Z: a minute starts
    app, _ = make_app(clock)
    async with app:
        await app.enqueue("bad", {})
        await run(app, clock)  # minute 0: 1 dead, 1 failed attempt
        clock.advance(120)
        for i in range(3):
            await app.enqueue("flaky", {"i": i})
        await run(app, clock)  # minute 2: 3 failed, then (5 s later) 3 completed
        clock.set(FAKE_CLOCK_START + 59 * 60 + 30)  # the last minute of the first hour
        found = await series(app)
        assert found.start == FAKE_CLOCK_START  # the window's first minute
        assert found.until == clock.now()
        assert len(found.counts["dead"]) == 60
        assert found.counts["dead"][0] == 1 and sum(found.counts["dead"]) == 1
        assert found.counts["failed_attempts"][:3] == [1, 0, 3]
        assert found.counts["succeeded"][:3] == [0, 0, 3]
        report = await app.analytics(window=3600)  # the same minutes as the analytics
        assert sum(found.counts["succeeded"]) == report.total.succeeded
        assert sum(found.counts["failed_attempts"]) == report.total.failed_attempts
        only_bad = await series(app, 3600, ["dead", "attempts"], task="bad")
        assert (sum(only_bad.counts["dead"]), sum(only_bad.counts["attempts"])) == (1, 1)
        clock.advance(60)  # the first minute leaves the window
        assert sum((await series(app)).counts["dead"]) == 0
        short = await series(app, window=300)
        assert len(short.counts["dead"]) == 5
        with pytest.raises(ValueError, match="window"):
            await series(app, window=7 * 3600)
        with pytest.raises(ValueError, match="unknown counts nope"):
            await series(app, names=["nope"])
