"""The seed report's retry scenarios, and the worker's handling of outcomes, on every backend."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from genqueue import (
    App,
    AttemptOutcome,
    Cancel,
    ErrorKind,
    FakeClock,
    JobState,
    Retry,
    RetryPolicy,
    Snooze,
    TaskError,
)
from tests.conformance.helpers import Recorder
from tests.conftest import FixedRandom, drain


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status} from provider")
        self.status_code = status


def failing(app: App, name: str, exc: BaseException, **options):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    @app.task(name, **options)
    async def task(ctx):  # type: ignore[no-untyped-def]
        calls.append(ctx.attempt)
        raise exc

    return calls


async def test_retry_on_500(app: App, clock: FakeClock) -> None:
    failing(app, "gen", HttpError(500))
    job = await app.enqueue("gen", {"prompt": "cat"})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.RETRYING
    assert stored.retry_count == 1 and stored.attempts == 1
    assert stored.run_at == pytest.approx(clock.now() + 5.0)  # base delay, jitter at its midpoint
    [attempt] = stored.history
    assert attempt.outcome is AttemptOutcome.FAILED and attempt.delay == pytest.approx(5.0)
    assert attempt.error is not None and attempt.error.kind is ErrorKind.SERVER
    assert attempt.error.status == 500 and "HTTP 500" in (attempt.error.stack or "")
    assert stored.last_error is not None and stored.last_error.kind is ErrorKind.SERVER


async def test_no_retry_on_401(app: App) -> None:
    failing(app, "gen", HttpError(401))
    job = await app.enqueue("gen", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.retry_count == 0
    entry = await app.dlq.get(job.id)
    assert entry.error_kind is ErrorKind.AUTH and "not retried" in entry.reason


async def test_retry_count_increments_with_exponential_delays(app: App, clock: FakeClock) -> None:
    calls = failing(app, "gen", HttpError(503), max_retries=3)
    job = await app.enqueue("gen", {})
    delays = []
    for expected_count in (1, 2, 3):
        await drain(app)
        stored = await app.get(job.id)
        assert stored.state is JobState.RETRYING and stored.retry_count == expected_count
        delays.append(stored.run_at - clock.now())
        clock.advance(delays[-1])
    assert delays == pytest.approx([5.0, 10.0, 20.0])
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.retry_count == 3
    assert calls == [1, 2, 3, 4] and len(stored.history) == 4


async def test_retry_is_not_early(app: App, clock: FakeClock) -> None:
    calls = failing(app, "gen", HttpError(500))
    await app.enqueue("gen", {})
    await drain(app)
    clock.advance(4.99)
    await drain(app)
    assert calls == [1]
    clock.advance(0.01)
    await drain(app)
    assert calls == [1, 2]


async def test_no_retry_after_max_retries(app: App, clock: FakeClock) -> None:
    calls = failing(app, "gen", HttpError(500))
    recorder = Recorder(app)
    job = await app.enqueue("gen", {})
    await drain(app)
    clock.advance(5)
    await drain(app)
    clock.advance(3600)
    await drain(app)
    assert calls == [1, 2]
    entry = await app.dlq.get(job.id)
    assert entry.reason == "retries exhausted (1 of 1 used)"
    decisions = recorder.of("retry_decision")
    assert [d["allowed"] for d in decisions] == [True, False]


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        OSError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError("read timed out"),
        TaskError("overloaded", kind="rate_limited"),
    ],
)
async def test_transient_errors_are_retried(app: App, exc: BaseException) -> None:
    failing(app, "gen", exc)
    job = await app.enqueue("gen", {})
    await drain(app)
    assert (await app.get(job.id)).state is JobState.RETRYING


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (HttpError(422), ErrorKind.VALIDATION),
        (HttpError(402), ErrorKind.PAYMENT),
        (ValueError("weird"), ErrorKind.UNKNOWN),
        (TaskError("the provider failed the job", kind="remote_failed"), ErrorKind.REMOTE_FAILED),
    ],
)
async def test_permanent_errors_go_straight_to_the_dlq(
    app: App, exc: BaseException, kind: ErrorKind
) -> None:
    failing(app, "gen", exc)
    job = await app.enqueue("gen", {})
    await drain(app)
    assert (await app.get(job.id)).state is JobState.DEAD
    assert (await app.dlq.get(job.id)).error_kind is kind


async def test_per_task_classifier_rules(app: App) -> None:
    from genqueue import ClassifierRules

    failing(
        app,
        "gen",
        ValueError("flaky upstream"),
        classifier=ClassifierRules.build(retryable=["unknown"]),
    )
    job = await app.enqueue("gen", {})
    await drain(app)
    assert (await app.get(job.id)).state is JobState.RETRYING


async def test_timeout_is_classified_and_retried(app: App) -> None:
    @app.task("slow", timeout=0.05)
    async def slow(ctx):  # type: ignore[no-untyped-def]
        await asyncio.sleep(10)

    job = await app.enqueue("slow", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.RETRYING
    assert stored.last_error is not None and stored.last_error.kind is ErrorKind.TIMEOUT
    assert "timed out after 0.05" in stored.last_error.message


async def test_sync_task_functions_run_in_threads(app: App) -> None:
    import threading

    main = threading.get_ident()

    @app.task("blocking")
    def blocking(ctx):  # type: ignore[no-untyped-def]
        return threading.get_ident() != main

    job = await app.enqueue("blocking", {})
    await drain(app)
    assert (await app.get(job.id)).result is True


async def test_retry_signal_counts_as_a_retry(app: App, clock: FakeClock) -> None:
    @app.task("again", max_retries=1)
    async def again(ctx):  # type: ignore[no-untyped-def]
        raise Retry(delay=7)

    job = await app.enqueue("again", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.RETRYING and stored.retry_count == 1
    assert stored.run_at == clock.now() + 7
    clock.advance(7)
    await drain(app)
    assert (await app.get(job.id)).state is JobState.DEAD


async def test_snooze_does_not_spend_a_retry(app: App, clock: FakeClock) -> None:
    @app.task("sleepy")
    async def sleepy(ctx):  # type: ignore[no-untyped-def]
        if ctx.attempt < 4:
            raise Snooze(30)
        return "awake"

    job = await app.enqueue("sleepy", {})
    for _ in range(3):
        await drain(app)
        stored = await app.get(job.id)
        assert stored.state is JobState.SCHEDULED and stored.retry_count == 0
        clock.advance(30)
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.COMPLETED and stored.result == "awake"
    # consecutive snoozes for the same reason share one history entry that counts them
    assert [a.outcome for a in stored.history] == [AttemptOutcome.SNOOZED, AttemptOutcome.COMPLETED]
    assert stored.history[0].details["snoozes"] == 3 and stored.attempts == 4


async def test_cancel_signal(app: App) -> None:
    @app.task("quit")
    async def quit_(ctx):  # type: ignore[no-untyped-def]
        raise Cancel("user deleted the project")

    job = await app.enqueue("quit", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.CANCELLED
    assert stored.meta["cancel_reason"] == "user deleted the project"


async def test_non_json_result_is_a_permanent_failure(app: App) -> None:
    @app.task("weird")
    async def weird(ctx):  # type: ignore[no-untyped-def]
        return {1, 2}

    job = await app.enqueue("weird", {})
    await drain(app)
    entry = await app.dlq.get(job.id)
    assert entry.error_kind is ErrorKind.VALIDATION and "not JSON" in entry.job.last_error.message  # type: ignore[union-attr]


@dataclass
class Picture:
    url: str


@pytest.mark.parametrize(
    ("result", "detail"),
    [
        (float("nan"), "result is nan; JSON has no NaN or Infinity"),
        ({"scores": [1.0, float("inf")]}, "result.scores[1] is inf; JSON has no NaN"),
        ({"picture": Picture("a.png")}, "result.picture is a Picture, which is not JSON"),
        ([datetime(2026, 1, 1, tzinfo=UTC)], "result[0] is a datetime, which is not JSON"),
    ],
)
async def test_result_that_is_not_strict_json_fails_as_validation(
    app: App, result: object, detail: str
) -> None:
    @app.task("lenient")
    async def lenient(ctx):  # type: ignore[no-untyped-def]
        return result

    job = await app.enqueue("lenient", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.DEAD and stored.result is None
    error = stored.last_error
    assert error is not None and error.kind is ErrorKind.VALIDATION and not error.retryable
    assert error.message.startswith("task result cannot be stored as JSON: ")
    assert detail in error.message
    assert len(stored.history) == 1  # not retried


async def test_strict_json_result_is_stored_as_returned(app: App) -> None:
    result = {"url": "a.png", "access_token": "shown to the caller", "n": [1, 2.5, None, True]}

    @app.task("fine")
    async def fine(ctx):  # type: ignore[no-untyped-def]
        return result

    job = await app.enqueue("fine", {})
    await drain(app)
    stored = await app.get(job.id)
    assert stored.state is JobState.COMPLETED and stored.result == result


async def test_unknown_task_in_worker_is_dead_lettered(app: App) -> None:
    other = App(app.backend, clock=app.clock, strict_tasks=False)
    job = await other.enqueue("not.registered.anywhere", {})

    @app.task("known")
    async def known(ctx):  # type: ignore[no-untyped-def]
        return None

    from genqueue import Worker
    from tests.conftest import FAST

    await Worker(app, queues=["default"], burst=True, settings=FAST).run()
    entry = await app.dlq.get(job.id)
    assert (
        entry.error_kind is ErrorKind.VALIDATION
        and "not.registered.anywhere" in entry.job.last_error.message
    )  # type: ignore[union-attr]


async def test_event_sequence_for_a_job_that_dies(app: App, clock: FakeClock) -> None:
    failing(app, "gen", HttpError(500))
    recorder = Recorder(app)
    job = await app.enqueue("gen", {}, user_id="u9")
    await drain(app)
    clock.advance(10)
    await drain(app)
    names = [n for n in recorder.names() if n not in ("worker_started", "worker_stopped")]
    assert names == [
        "job_enqueued",
        "job_started",
        "queue_error",
        "retry_decision",
        "queue_retry",
        "job_started",
        "queue_error",
        "retry_decision",
        "queue_dlq_move",
    ]
    error = recorder.of("queue_error")[0]
    assert (
        error["job_id"] == job.id
        and error["error_kind"] == "server"
        and "HTTP 500" in error["stack"]
    )
    move = recorder.of("queue_dlq_move")[0]
    assert move["user_id"] == "u9" and move["reason"].startswith("retries exhausted")


async def test_concurrency_limit_is_respected(app: App) -> None:
    running = 0
    peak = 0

    @app.task("busy")
    async def busy(ctx):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    for _ in range(20):
        await app.enqueue("busy", {})
    await drain(app, concurrency=3)
    assert peak == 3


async def test_queue_policy_overrides_app_policy(make_backend, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    from genqueue import QueueOptions

    app = App(
        make_backend(),
        clock=clock,
        queues={
            "images": QueueOptions(
                retry=RetryPolicy(max_retries=2, base_delay=1, random=FixedRandom())
            )
        },
    )
    async with app:
        failing(app, "gen", HttpError(500), queue="images")
        job = await app.enqueue("gen", {})
        assert job.max_retries == 2
        await drain(app)
        stored = await app.get(job.id)
        assert stored.run_at - clock.now() == pytest.approx(1.0)
