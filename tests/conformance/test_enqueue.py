"""Producers: enqueue, idempotency, validation, get, list, cancel, wait, progress."""

from __future__ import annotations

import asyncio

import pytest

from genqueue import (
    App,
    FakeClock,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    InvalidJobId,
    JobFailed,
    JobNotFound,
    JobRequest,
    JobState,
    TaskError,
    UnknownTask,
    WaitTimeout,
    maintenance,
)
from genqueue.settings import Retention
from tests.conformance.helpers import Recorder
from tests.conftest import drain


@pytest.fixture
def noop(app: App):  # type: ignore[no-untyped-def]
    @app.task("noop")
    async def noop(ctx):  # type: ignore[no-untyped-def]
        return {"echo": ctx.data}

    return noop


async def count_jobs(app: App) -> int:
    counts = await app.backend.counts()
    return sum(sum(states.values()) for states in counts.values())


async def test_enqueue_stores_a_queued_job(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder(app)
    job = await app.enqueue("noop", {"prompt": "cat"}, user_id="u1")
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    stored = await app.get(job.id)
    assert stored.state is JobState.QUEUED
    assert stored.data == {"prompt": "cat"} and stored.user_id == "u1"
    assert stored.created_at == stored.updated_at == stored.run_at == clock.now()
    assert (stored.attempts, stored.retry_count, stored.max_retries) == (0, 0, 1)
    assert recorder.names() == ["job_enqueued"]


async def test_ids_are_random_and_unique(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    jobs = await app.queue.enqueue_many([JobRequest("noop", {"i": i}) for i in range(200)])
    assert len({j.id for j in jobs}) == 200


async def test_delayed_job_is_scheduled_then_promoted(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    job = await app.enqueue("noop", {}, delay=60)
    assert job.state is JobState.SCHEDULED and job.run_at == clock.now() + 60
    await drain(app)
    assert (await app.get(job.id)).state is JobState.SCHEDULED  # not early
    clock.advance(59.9)
    assert await app.backend.promote(100) == 0
    clock.advance(0.1)
    assert await app.backend.promote(100) == 1
    assert (await app.get(job.id)).state is JobState.QUEUED
    await drain(app)
    assert (await app.get(job.id)).state is JobState.COMPLETED


async def test_run_at_in_the_past_is_due_now(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    job = await app.enqueue("noop", {}, run_at=clock.now() - 10)
    assert job.state is JobState.QUEUED


async def test_batch_enqueue_is_all_or_nothing(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    requests = [JobRequest("noop", {"i": 1}), JobRequest("noop", {"bad": float("nan")})]
    with pytest.raises(InvalidInput):
        await app.queue.enqueue_many(requests)
    assert await count_jobs(app) == 0


async def test_idempotency_key_returns_the_pending_job(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    first = await app.enqueue("noop", {"n": 1, "m": [1, 2]}, idempotency_key="k1")
    again = await app.enqueue("noop", {"m": [1, 2], "n": 1}, idempotency_key="k1")
    assert again.id == first.id and again.data == {"n": 1, "m": [1, 2]}
    batch = await app.queue.enqueue_many(
        [JobRequest("noop", idempotency_key="k2"), JobRequest("noop", idempotency_key="k2")]
    )
    assert batch[0].id == batch[1].id
    assert await count_jobs(app) == 2
    await drain(app)
    after = await app.enqueue("noop", {"n": 3}, idempotency_key="k1")
    assert after.id != first.id  # the first one is terminal now


async def test_idempotency_key_with_other_data_is_refused(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder(app)
    first = await app.enqueue("noop", {"n": 1}, idempotency_key="k1 / é")
    with pytest.raises(IdempotencyConflict) as info:
        await app.enqueue("noop", {"n": 2}, idempotency_key="k1 / é")
    assert isinstance(info.value, InvalidInput) and info.value.field == "idempotency_key"
    assert info.value.key == "k1 / é" and info.value.job_id == first.id
    assert f"idempotency key 'k1 / é' is already used by job {first.id}" in str(info.value)
    # A batch with a conflict stores none of its jobs: with a pending holder...
    with pytest.raises(IdempotencyConflict):
        await app.queue.enqueue_many(
            [JobRequest("noop", {"n": 9}), JobRequest("noop", {"n": 3}, idempotency_key="k1 / é")]
        )
    # ...or with two jobs of the batch itself.
    with pytest.raises(IdempotencyConflict, match="'k2'"):
        await app.queue.enqueue_many(
            [
                JobRequest("noop", {"n": 1}, idempotency_key="k2"),
                JobRequest("noop", {"n": 2}, idempotency_key="k2"),
            ]
        )
    assert await count_jobs(app) == 1
    assert recorder.names() == ["job_enqueued"]
    # Same data is still a re-sent enqueue; the key is free again once the job is done.
    assert (await app.enqueue("noop", {"n": 1}, idempotency_key="k1 / é")).id == first.id
    await drain(app)
    assert (await app.enqueue("noop", {"n": 2}, idempotency_key="k1 / é")).id != first.id


async def test_redriven_job_holds_its_key_with_its_data(app: App, clock: FakeClock) -> None:
    @app.task("fails")
    async def fails(ctx):  # type: ignore[no-untyped-def]
        raise TaskError("no", kind="validation")

    job = await app.enqueue("fails", {"n": 1}, idempotency_key="k")
    await drain(app)
    assert (await app.get(job.id)).state is JobState.DEAD
    assert (await app.enqueue("fails", {"n": 2}, idempotency_key="k")).id != job.id
    await app.cancel((await app.enqueue("fails", {"n": 2}, idempotency_key="k")).id)
    await app.dlq.redrive(job.id)
    assert (await app.enqueue("fails", {"n": 1}, idempotency_key="k")).id == job.id
    with pytest.raises(IdempotencyConflict):
        await app.enqueue("fails", {"n": 2}, idempotency_key="k")


async def test_idempotency_keys_are_scoped_to_a_queue(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    first = await app.enqueue("noop", {}, idempotency_key="same")
    other = await app.enqueue("noop", {}, idempotency_key="same", queue="other")
    assert other.id != first.id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": "nope"}, "task"),
        ({"data": {"x": object()}}, "data.x"),
        ({"data": {"x": float("inf")}}, "data.x"),
        ({"data": {"api_key": "sk-123"}}, "data.api_key"),
        ({"delay": -1}, "delay"),
        ({"delay": float("nan")}, "delay"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 10_000}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"queue": "bad queue!"}, "queue"),
        ({"user_id": ""}, "user_id"),
        ({"timeout": 0}, "timeout"),
    ],
)
async def test_bad_input_is_rejected_and_nothing_stored(app: App, noop, kwargs, field) -> None:  # type: ignore[no-untyped-def]
    kwargs = dict(kwargs)
    task = kwargs.pop("task", "noop")
    data = kwargs.pop("data", {})
    with pytest.raises(InvalidInput) as info:
        await app.enqueue(task, data, **kwargs)
    assert info.value.field == field
    assert await count_jobs(app) == 0


async def test_unknown_task_lists_known_ones(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownTask, match="registered tasks: noop"):
        await app.enqueue("generate", {})


@pytest.mark.parametrize("bad", ["", "xyz", "0" * 31, "g" * 32, "../../etc/passwd", "*", 42])
async def test_bad_ids_get_a_clear_error(app: App, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidJobId, match="32 hexadecimal"):
        await app.get(bad)


async def test_missing_job_is_not_found(app: App) -> None:
    with pytest.raises(JobNotFound, match="0" * 32):
        await app.get("0" * 32)


async def test_list_by_state_with_pagination(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(7):
        ids.append((await app.enqueue("noop", {"i": i})).id)
        clock.advance(1)
    await app.enqueue("noop", {}, delay=100)
    seen, cursor = [], None
    while True:
        page = await app.queue.list(state="queued", limit=3, cursor=cursor)
        seen += [j.id for j in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert len((await app.queue.list(state=["scheduled"])).items) == 1
    with pytest.raises(InvalidInput, match="valid states"):
        await app.queue.list(state="sleeping")


async def test_list_by_creation_time_with_pagination(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    start = clock.now()
    ids = []
    for i in range(6):
        ids.append((await app.enqueue("noop", {"i": i})).id)
        clock.advance(10)
    since, until = start + 10, start + 50  # created at 10, 20, 30, 40 s
    seen, cursor = [], None
    while True:
        page = await app.queue.list(since=since, until=until, limit=3, cursor=cursor)
        seen += [j.id for j in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids[1:5]))
    assert [j.id for j in (await app.queue.list(since=start + 50)).items] == [ids[5]]
    assert [j.id for j in (await app.queue.list(until=start + 10)).items] == [ids[0]]


async def test_cancel_pending_and_refuse_terminal(app: App, noop) -> None:  # type: ignore[no-untyped-def]
    job = await app.enqueue("noop", {}, delay=30)
    cancelled = await app.cancel(job.id, "changed my mind")
    assert cancelled.state is JobState.CANCELLED
    assert (await app.get(job.id)).state is JobState.CANCELLED
    with pytest.raises(IllegalTransition):
        await app.cancel(job.id)
    await drain(app)
    assert (await app.get(job.id)).attempts == 0


async def test_cancel_running_job_stops_it(app: App) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    @app.task("slow")
    async def slow(ctx):  # type: ignore[no-untyped-def]
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    job = await app.enqueue("slow", {})
    runner = asyncio.create_task(drain(app, lease_seconds=0.3))
    await asyncio.wait_for(started.wait(), 5)
    await app.cancel(job.id)
    await asyncio.wait_for(stopped.wait(), 5)
    await asyncio.wait_for(runner, 5)
    final = await app.get(job.id)
    assert final.state is JobState.CANCELLED and final.result is None


async def test_wait_returns_result_or_raises(app: App) -> None:
    @app.task("double")
    async def double(ctx):  # type: ignore[no-untyped-def]
        return ctx.data * 2

    @app.task("fail")
    async def fail(ctx):  # type: ignore[no-untyped-def]
        raise PermissionError("no")

    ok = await app.enqueue("double", 21)
    bad = await app.enqueue("fail", None)
    pending = await app.enqueue("double", 1, delay=999)
    await drain(app)
    assert await app.wait(ok.id, timeout=1) == 42
    with pytest.raises(JobFailed, match="dead"):
        await app.wait(bad.id, timeout=1)
    with pytest.raises(WaitTimeout):
        await app.wait(pending.id, timeout=0.05)


async def test_progress_is_visible_on_the_job(app: App) -> None:
    seen = []

    @app.task("steps")
    async def steps(ctx):  # type: ignore[no-untyped-def]
        for pct in (10, 50, 90):
            ctx.progress(pct, f"step {pct}")
            await ctx.flush()
            seen.append((await ctx.app.get(ctx.id)).progress)
        return "done"

    job = await app.enqueue("steps", {})
    await drain(app)
    assert [p.percent for p in seen] == [10, 50, 90]
    assert seen[-1].message == "step 90"
    assert (await app.get(job.id)).progress.percent == 90  # type: ignore[union-attr]


async def test_progress_from_a_sync_task_thread(app: App) -> None:
    @app.task("sync_steps")
    def sync_steps(ctx):  # type: ignore[no-untyped-def]
        for pct in range(0, 101, 10):
            ctx.progress(pct)
        return pct

    job = await app.enqueue("sync_steps", {})
    await drain(app)
    final = await app.get(job.id)
    assert final.result == 100 and final.progress is not None and final.progress.percent == 100


async def test_finished_jobs_are_removed_after_retention(app: App, clock: FakeClock, noop) -> None:  # type: ignore[no-untyped-def]
    done = await app.enqueue("noop", {})
    cancelled = await app.enqueue("noop", {}, delay=10)
    await app.cancel(cancelled.id)
    await drain(app)
    clock.advance(24 * 3600 - 1)
    await drain(app)
    assert (await app.get(done.id)).state is JobState.COMPLETED
    clock.advance(2)
    recorder = Recorder(app)
    await drain(app)
    for job in (done, cancelled):
        with pytest.raises(JobNotFound):
            await app.get(job.id)
    assert recorder.of("jobs_expired")[0]["count"] == 2


async def test_each_queue_keeps_at_most_its_cap_of_finished_jobs(
    app: App, clock: FakeClock, noop
) -> None:  # type: ignore[no-untyped-def]
    @app.task("other", queue="other")
    async def other(ctx):  # type: ignore[no-untyped-def]
        return None

    done = []
    for _ in range(5):
        done.append((await app.enqueue("noop", {})).id)
        await drain(app)
        clock.advance(1)
    cancelled = await app.enqueue("noop", {}, delay=100)
    await app.cancel(cancelled.id)
    elsewhere = await app.enqueue("other", {})
    pending = await app.enqueue("noop", {}, delay=100)
    await drain(app)
    now, old = clock.now(), clock.now() - 3600  # nothing has expired
    assert await app.backend.purge_finished(now, old, 1000, keep=None) == 0
    assert await app.backend.purge_finished(now, old, 2, keep=0) == 2  # the limit holds
    assert await app.backend.purge_finished(now, old, 1000, keep=3) == 1  # the oldest first
    for job_id in done[:3]:
        with pytest.raises(JobNotFound):
            await app.get(job_id)
    for job_id in (*done[3:], cancelled.id, elsewhere.id, pending.id):  # per queue; unfinished
        await app.get(job_id)
    app.retention = Retention(finished_per_queue=1)  # what workers' sweeps enforce
    assert await maintenance.sweep(app) == 2
    kept = {j.id for j in (await app.queue.list(queue="default")).items}
    assert kept == {pending.id, cancelled.id}  # the newest finished one, and the pending one


async def test_blocking_client(app: App, noop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A separate app on the same storage, driven from synchronous code in a thread.
    from genqueue.backends.memory import MemoryBackend

    if isinstance(app.backend, MemoryBackend):
        pytest.skip("the memory backend is private to one app")
    other = App(app.backend.url, clock=app.clock)
    other.task("noop")(noop.fn)
    recorder = Recorder(other)

    def producer() -> list[str]:
        # The first enqueue of a queue goes through the client's event loop; the later
        # ones, on Redis, are sent from this thread (Backend.enqueue_now): same results.
        with other.blocking() as client:
            jobs = [client.enqueue("noop", {"from": "sync", "n": n}) for n in range(3)]
            assert client.get(jobs[0].id).state is JobState.QUEUED
            keyed = client.enqueue("noop", {"k": 1}, idempotency_key="once")
            assert client.enqueue("noop", {"k": 1}, idempotency_key="once").id == keyed.id
            with pytest.raises(IdempotencyConflict):
                client.enqueue("noop", {"k": 2}, idempotency_key="once")
            with pytest.raises(InvalidInput, match="unexpected keyword"):
                client.enqueue("noop", {}, colour="red")
            batch = client.enqueue_many([JobRequest("noop", {"b": i}) for i in range(2)])
            return [j.id for j in [*jobs, keyed, *batch]]

    ids = await asyncio.to_thread(producer)
    assert [f["job_id"] for f in recorder.of("job_enqueued")] == ids  # once each, in order
    await drain(app)
    assert (await app.get(ids[0])).result == {"echo": {"from": "sync", "n": 0}}
    assert len((await app.list_jobs(state="completed", limit=100)).items) == len(ids)
