"""Finished jobs: per-task retention (``keep_finished``), ``keep_result=False``, and the
compact record a completed job keeps, on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from genqueue import (
    App,
    AttemptOutcome,
    ErrorKind,
    FakeClock,
    Job,
    JobGone,
    JobNotFound,
    JobState,
    maintenance,
)
from genqueue.backends.base import Move
from tests.conformance.helpers import Recorder
from tests.conftest import drain

DAY = 24 * 3600.0


def register(app: App, name: str, **options: Any) -> None:
    @app.task(name, **options)
    async def task(ctx):  # type: ignore[no-untyped-def]
        return {"done": name}


async def test_a_task_keeps_its_finished_jobs_for_its_own_time(app: App, clock: FakeClock) -> None:
    register(app, "brief", keep_finished=60)
    register(app, "long", keep_finished=timedelta(days=2))
    register(app, "plain")
    brief, long, plain = [await app.enqueue(name, {}) for name in ("brief", "long", "plain")]
    cancelled = await app.enqueue("brief", {}, delay=600)
    await app.cancel(cancelled.id)
    await drain(app)
    finished = clock.now()
    stored = {job.id: await app.get(job.id) for job in (brief, long, plain, cancelled)}
    assert stored[brief.id].expires_at == pytest.approx(finished + 60)
    assert stored[long.id].expires_at == pytest.approx(finished + 2 * DAY)
    assert stored[plain.id].expires_at == pytest.approx(finished + DAY)  # Retention's age

    clock.advance(61)
    assert await maintenance.sweep(app) == 2  # the brief task's completed and cancelled jobs
    for job in (brief, cancelled):
        with pytest.raises(JobNotFound):
            await app.get(job.id)
    assert (await app.get(plain.id)).state is JobState.COMPLETED  # as old, kept

    clock.advance(DAY)
    assert await maintenance.sweep(app) == 1
    with pytest.raises(JobNotFound):
        await app.get(plain.id)
    assert (await app.get(long.id)).state is JobState.COMPLETED  # longer than the app's day
    clock.advance(DAY)
    assert await maintenance.sweep(app) == 1
    assert await app.backend.counts() in ({}, {"default": {}})


async def test_keep_finished_zero_deletes_the_job_as_it_finishes(
    app: App, clock: FakeClock
) -> None:
    register(app, "fire", keep_finished=0)
    register(app, "plain")
    recorder = Recorder(app)
    fired = await app.enqueue("fire", {})
    kept = await app.enqueue("plain", {})
    await drain(app)
    with pytest.raises(JobNotFound):
        await app.get(fired.id)
    assert (await app.get(kept.id)).state is JobState.COMPLETED
    assert [e["job_id"] for e in recorder.of("job_completed")] == [fired.id, kept.id]
    assert (await app.backend.counts())["default"] == {"completed": 1}

    pending = await app.enqueue("fire", {}, delay=60)
    assert (await app.cancel(pending.id)).state is JobState.CANCELLED  # the caller sees it
    with pytest.raises(JobNotFound):
        await app.get(pending.id)
    assert await maintenance.sweep(app) == 0  # nothing was left for the sweeper


async def test_wait_on_a_job_deleted_as_it_completes_raises_job_gone(app: App) -> None:
    register(app, "fire", keep_finished=0)
    job = await app.enqueue("fire", {})
    looked = asyncio.Event()
    get = app.queue.get

    async def get_and_tell(job_id: str) -> Job:
        try:
            return await get(job_id)
        finally:
            looked.set()

    app.queue.get = get_and_tell  # type: ignore[method-assign]
    waiter = asyncio.create_task(app.wait(job.id, timeout=60))
    await looked.wait()  # the waiter has seen the job queued
    await drain(app)
    with pytest.raises(JobGone, match="finished and was deleted"):
        await waiter
    with pytest.raises(JobNotFound) as late:  # a wait that starts afterwards
        await app.wait(job.id, timeout=1)
    assert not isinstance(late.value, JobGone)


async def test_keep_result_false_records_completion_without_the_result(app: App) -> None:
    @app.task("secret", keep_result=False)
    async def secret(ctx):  # type: ignore[no-untyped-def]
        ctx.add_cost(usd=0.25)
        return {"image": "x" * 1000}

    job = await app.enqueue("secret", {"prompt": "cat"})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.COMPLETED and stored.result is None
    assert stored.attempts == 1 and stored.finished_at is not None
    assert stored.cost == {"usd": 0.25} and stored.data == {"prompt": "cat"}
    assert [a.outcome for a in stored.history] == [AttemptOutcome.COMPLETED]
    assert await app.wait(job.id, timeout=1) is None


class Flaky(Exception):
    status_code = 500


async def test_a_compact_completed_job_still_shows_everything(app: App, clock: FakeClock) -> None:
    @app.task("gen", max_retries=2)
    async def gen(ctx):  # type: ignore[no-untyped-def]
        await ctx.set_remote_job_id(f"remote-{ctx.attempt}")
        ctx.add_cost(usd=0.5)
        ctx.progress(50, "half")
        if ctx.attempt == 1:
            raise Flaky("HTTP 500 from provider")
        return {"url": "https://example.com/cat.png"}

    job = await app.enqueue("gen", {"prompt": "cat"}, user_id="u1")
    await drain(app)
    failed = await app.get(job.id)
    assert failed.history[0].error and failed.history[0].error.stack  # while it retries
    clock.advance(10)
    await drain(app)
    done = await app.get(job.id)
    assert done.state is JobState.COMPLETED and done.result == {
        "url": "https://example.com/cat.png"
    }
    assert (done.data, done.user_id, done.queue, done.task) == (
        {"prompt": "cat"},
        "u1",
        "default",
        "gen",
    )
    assert (done.attempts, done.retry_count, done.max_retries) == (2, 1, 2)
    assert done.remote_job_id == "remote-2" and done.cost == {"usd": 1.0}
    assert done.progress is not None and done.progress.percent == 50
    assert done.created_at == job.created_at and done.run_at == pytest.approx(job.created_at + 5)
    assert done.finished_at == clock.now() and done.started_at == clock.now()
    assert done.expires_at == pytest.approx(clock.now() + DAY)
    first, second = done.history
    assert first.outcome is AttemptOutcome.FAILED and first.error is not None
    assert first.error.kind is ErrorKind.SERVER and first.error.status == 500
    assert "HTTP 500" in first.error.message and first.error.type.endswith("Flaky")
    assert first.error.stack is None  # dropped once the job completed
    assert first.details["remote_job_id"] == "remote-1"
    assert first.started_at == first.finished_at == job.created_at  # the clock stood still
    assert second.outcome is AttemptOutcome.COMPLETED and second.worker
    assert (second.started_at, second.finished_at) == (done.started_at, done.finished_at)
    assert done.last_error is not None and done.last_error.kind is ErrorKind.SERVER
    public = done.to_public()
    assert set(public) == set(Job("0" * 32, "t", 0.0, 0.0).to_public())  # the stable shape
    assert public["history"][1]["duration"] == 0.0 and public["history"][0]["error"]["message"]


async def test_a_job_stored_without_an_expiry_goes_by_the_age_rule(
    app: App, clock: FakeClock
) -> None:
    # As jobs that finished before expiries were stored (and moves made by hand) are.
    register(app, "plain")
    await app.enqueue("plain", {})
    [job] = await app.backend.fetch(["default"], "w", 1, 30)
    t0 = clock.now()
    done = replace(job, state=JobState.COMPLETED, finished_at=t0, lease_owner=None)
    assert await app.backend.move([Move(done, JobState.ACTIVE, job.attempts)]) == [True]
    assert (await app.get(job.id)).expires_at is None
    clock.advance(10)
    assert await app.backend.purge_finished(clock.now(), t0 - 1, 100) == 0  # not old enough
    assert (await app.get(job.id)).state is JobState.COMPLETED
    clock.advance(10)
    assert await app.backend.purge_finished(clock.now(), t0 + 1, 100) == 1
    with pytest.raises(JobNotFound):
        await app.get(job.id)
