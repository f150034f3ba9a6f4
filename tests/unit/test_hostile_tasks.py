"""No task takes its worker down, and every attempt is recorded for what it was.

A task raising SystemExit, KeyboardInterrupt, GeneratorExit or any other BaseException
fails on its own (classified, retried or dead-lettered) while the worker goes on; a
CancelledError the worker did not cause is the task's failure, never "completed" and
never ``worker_lost``; the worker's own cancellations (timeout, shutdown, lost lease)
are recorded as such.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from genqueue import (
    App,
    AttemptOutcome,
    ErrorClassifier,
    ErrorKind,
    FakeClock,
    JobState,
    RetryPolicy,
    Worker,
    WorkerSettings,
)
from genqueue.backends.memory import MemoryBackend
from genqueue.job import Job
from tests.conformance.helpers import Recorder
from tests.conftest import drain


class Hostile(BaseException):
    """Neither an Exception nor one of Python's own control-flow exceptions."""


HOSTILE = [
    pytest.param(SystemExit(3), "task raised SystemExit: 3", id="SystemExit"),
    pytest.param(KeyboardInterrupt(), "task raised KeyboardInterrupt", id="KeyboardInterrupt"),
    pytest.param(GeneratorExit(), "task raised GeneratorExit", id="GeneratorExit"),
    pytest.param(Hostile("boom"), "task raised Hostile: boom", id="BaseException"),
]


@pytest.fixture
async def app() -> AsyncIterator[App]:
    application = App("memory://", clock=FakeClock(), retry=RetryPolicy(base_delay=0, jitter=0))
    async with application:
        yield application


def innocent(app: App) -> None:
    @app.task("innocent")
    async def run(ctx):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.01)
        return ctx.data["i"]


async def dead_letter(app: App, job_id: str) -> tuple[str, str, str]:
    entry = await app.dlq.get(job_id)
    error = entry.job.last_error
    assert error is not None
    return entry.error_kind.value, error.type, error.message


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize(("exc", "message"), HOSTILE)
async def test_a_base_exception_fails_its_task_and_the_worker_goes_on(
    app: App, exc: BaseException, message: str, sync: bool
) -> None:
    innocent(app)
    if sync:

        @app.task("hostile", max_retries=2)
        def hostile_sync(ctx):  # type: ignore[no-untyped-def]
            raise exc

    else:

        @app.task("hostile", max_retries=2)
        async def hostile_async(ctx):  # type: ignore[no-untyped-def]
            raise exc

    before = [await app.enqueue("innocent", {"i": i}) for i in range(3)]
    bad = await app.enqueue("hostile", {})
    after = [await app.enqueue("innocent", {"i": i}) for i in range(3, 6)]
    worker = await drain(app, lease_seconds=1)  # returns: the worker was not taken down
    for job in before + after:
        assert (await app.get(job.id)).state is JobState.COMPLETED
    stored = await app.get(bad.id)
    # Not retried: `unknown` is not a retryable kind, and these exceptions do not go away.
    assert stored.state is JobState.DEAD and stored.attempts == 1
    kind, error_type, error_message = await dead_letter(app, bad.id)
    assert kind == "unknown" and error_message == message
    assert error_type.rsplit(".", 1)[-1] == type(exc).__name__
    assert worker.stats == {"completed": 6, "dead": 1}


async def _await_a_future_holding(exc: BaseException) -> None:
    future = asyncio.get_running_loop().create_future()
    # Set later, so asyncio throws it into the awaiting task (a thrown GeneratorExit closes
    # every coroutine on the way and surfaces at the top of the job's asyncio task).
    asyncio.get_running_loop().call_soon(future.set_exception, exc)
    await future


@pytest.mark.parametrize(("exc", "message"), HOSTILE)
async def test_a_base_exception_thrown_into_the_task_by_a_future_is_its_failure(
    app: App, exc: BaseException, message: str
) -> None:
    innocent(app)

    @app.task("hostile", max_retries=2)
    async def hostile(ctx):  # type: ignore[no-untyped-def]
        await _await_a_future_holding(exc)

    bad = await app.enqueue("hostile", {})
    others = [await app.enqueue("innocent", {"i": i}) for i in range(3)]
    worker = await drain(app, lease_seconds=1)
    assert [(await app.get(j.id)).state for j in others] == [JobState.COMPLETED] * 3
    kind, _, error_message = await dead_letter(app, bad.id)
    assert kind == "unknown" and error_message == message
    assert worker.stats == {"completed": 3, "dead": 1}


async def test_a_system_exit_code_is_no_errno(app: App) -> None:
    """SystemExit(110) carries an exit code, not ETIMEDOUT: it is no retryable timeout."""
    classifier = ErrorClassifier()
    assert classifier.kind_of(SystemExit(110)) is ErrorKind.UNKNOWN
    assert classifier.kind_of(KeyboardInterrupt("connection refused")) is ErrorKind.UNKNOWN

    @app.task("exits", max_retries=2)
    async def exits(ctx):  # type: ignore[no-untyped-def]
        raise SystemExit(110)

    job = await app.enqueue("exits", {})
    await drain(app)
    assert (await app.get(job.id)).state is JobState.DEAD


async def test_rules_can_still_make_a_base_exception_retryable(app: App) -> None:
    from genqueue import ClassifierRules

    rules = ClassifierRules.build(kinds={SystemExit: "server"})

    @app.task("exits", max_retries=1, classifier=rules)
    async def exits(ctx):  # type: ignore[no-untyped-def]
        raise SystemExit(1)

    job = await app.enqueue("exits", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.attempts == 2
    assert [a.error.kind for a in stored.history if a.error] == [ErrorKind.SERVER] * 2


# -- CancelledError ---------------------------------------------------------------------------


async def _raise_cancelled(ctx: Any) -> None:
    raise asyncio.CancelledError()


async def _await_a_cancelled_future(ctx: Any) -> None:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)  # someone else cancels it
    await future


async def _cancel_itself(ctx: Any) -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(1)


def _sync_raise_cancelled(ctx: Any) -> None:
    raise asyncio.CancelledError()


@pytest.mark.parametrize(
    "fn", [_raise_cancelled, _await_a_cancelled_future, _cancel_itself, _sync_raise_cancelled]
)
async def test_a_tasks_own_cancelled_error_is_its_failure(app: App, fn: Any) -> None:
    innocent(app)
    app.task("cancels", max_retries=2)(fn)
    recorder = Recorder(app)
    job = await app.enqueue("cancels", {})
    other = await app.enqueue("innocent", {"i": 1})
    worker = await drain(app, lease_seconds=1)
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.attempts == 1
    assert [a.outcome for a in stored.history] == [AttemptOutcome.DEAD]
    kind, error_type, message = await dead_letter(app, job.id)
    assert kind == "unknown" and error_type.endswith("CancelledError")
    assert message == "task raised CancelledError, but the worker did not cancel it"
    assert (await app.get(other.id)).state is JobState.COMPLETED
    assert worker.stats == {"completed": 1, "dead": 1}
    completed = [e["job_id"] for e in recorder.of("job_completed")]
    assert completed == [other.id]


async def test_a_timeout_is_still_a_timeout_whatever_the_task_raises_on_its_way_out(
    app: App,
) -> None:
    @app.task("slow", timeout=0.05, max_retries=0)
    async def slow(ctx):  # type: ignore[no-untyped-def]
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("interrupted") from None

    job = await app.enqueue("slow", {})
    await drain(app)
    kind, _, message = await dead_letter(app, job.id)
    assert kind == "timeout" and message == "task slow timed out after 0.05 s"


async def test_a_failure_while_shutting_down_is_a_release(app: App) -> None:
    started = asyncio.Event()

    @app.task("cleanup")
    async def cleanup(ctx):  # type: ignore[no-untyped-def]
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed while cancelling") from None

    job = await app.enqueue("cleanup", {})
    worker = Worker(app, settings=WorkerSettings(poll_interval=0.01, shutdown_grace=0.05))
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.request_stop()
    await asyncio.wait_for(runner, 5)
    stored = await app.get(job.id)
    assert stored.state is JobState.QUEUED and stored.retry_count == 0
    assert stored.history[-1].outcome is AttemptOutcome.INTERRUPTED


async def test_a_lost_lease_writes_nothing(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.task("long")
    async def long(ctx):  # type: ignore[no-untyped-def]
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await app.enqueue("long", {})
    settings = WorkerSettings(poll_interval=0.01, lease_seconds=30, heartbeat_interval=0.02)
    worker = Worker(app, settings=settings)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    clock.advance(31)  # the lease expired: the next heartbeat finds it lost
    await asyncio.wait_for(cancelled.wait(), 5)
    worker.request_stop()
    await asyncio.wait_for(runner, 5)
    stored = await app.get(job.id)
    assert stored.state is JobState.ACTIVE and stored.history == []  # left to the reclaimer
    assert worker.stats == {"lease_lost": 1}


@pytest.mark.parametrize("teardown", [False, True], ids=["worker", "everything"])
async def test_a_cancelled_worker_is_a_killed_worker(app: App, teardown: bool) -> None:
    """Cancelling the worker (or asyncio.run tearing down: every task at once) stops its
    jobs without a word, as kill -9 would: not a failure of theirs, and not left running."""
    started = asyncio.Event()

    @app.task("long")
    async def long(ctx):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(60)

    job = await app.enqueue("long", {})
    worker = Worker(app, settings=WorkerSettings(poll_interval=0.01))
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    job_task = worker._running[job.id].task
    assert job_task is not None
    if teardown:
        job_task.cancel()  # first, as asyncio.run's teardown may
    runner.cancel()
    await asyncio.wait_for(asyncio.gather(runner, job_task, return_exceptions=True), 5)
    stored = await app.get(job.id)
    assert stored.state is JobState.ACTIVE and stored.history == []  # left to the reclaimer


class ForcedStopAtFetch(MemoryBackend):
    """Both stop requests arrive after a fetch, before the fetched job's task ever ran."""

    worker: Worker

    async def fetch(self, *args: Any, **kwargs: Any) -> list[Job]:
        jobs = await super().fetch(*args, **kwargs)
        if jobs:
            loop = asyncio.get_running_loop()
            loop.call_soon(self.worker.request_stop)
            loop.call_soon(self.worker.request_stop)
        return jobs


async def test_a_job_stopped_before_it_started_is_released_and_frees_its_slot() -> None:
    backend = ForcedStopAtFetch()
    app = App(backend)
    ran = []

    @app.task("t")
    async def task(ctx):  # type: ignore[no-untyped-def]
        ran.append(ctx.id)

    async with app:
        job = await app.enqueue("t", {})
        worker = Worker(app, settings=WorkerSettings(poll_interval=0.01))
        backend.worker = worker
        await asyncio.wait_for(worker.run(), 5)
        stored = await app.get(job.id)
        assert stored.state is JobState.QUEUED and ran == []
        assert [a.outcome for a in stored.history] == [AttemptOutcome.INTERRUPTED]
        assert worker._running == {}
