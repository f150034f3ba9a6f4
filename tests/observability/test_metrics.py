"""Prometheus metrics: event counters of one process, gauges read from the backend."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from genqueue import App, ErrorKind, FakeClock, JobContext, RetryPolicy, TaskError
from genqueue.observability.metrics import Metrics
from genqueue.observability.metrics.instruments import dead_letter_reason
from genqueue.providers.guard import ProviderGuard
from genqueue.providers.metrics import provider_readings
from genqueue.testing import run_until_idle

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scripted_app(clock: FakeClock) -> App:
    app = App("memory://", clock=clock, retry=RetryPolicy(max_retries=1, base_delay=1, jitter=0))
    failed_once: set[str] = set()

    @app.task("ok", queue="q")
    async def ok(ctx: JobContext) -> str:
        ctx.add_cost(usd=0.01)
        return "fine"

    @app.task("flaky", queue="q")
    async def flaky(ctx: JobContext) -> str:
        ctx.add_cost(usd=0.01)
        if ctx.id not in failed_once:
            failed_once.add(ctx.id)
            raise TaskError("503 from the provider", kind=ErrorKind.SERVER)
        return "fine"

    @app.task("bad", queue="q")
    async def bad(ctx: JobContext) -> None:
        raise TaskError("prompt too long", kind=ErrorKind.VALIDATION)

    @app.task("down", queue="q")
    async def down(ctx: JobContext) -> None:
        raise TaskError("connection refused", kind=ErrorKind.NETWORK)

    return app


async def test_a_scripted_run_is_counted() -> None:
    clock = FakeClock()
    app = scripted_app(clock)
    metrics = Metrics(app)
    metrics.install()
    async with app:
        for task, n in (("ok", 5), ("flaky", 3), ("bad", 2), ("down", 1)):
            for i in range(n):
                await app.enqueue(task, {"i": i, "prompt": "a secret prompt"}, user_id=f"user-{i}")
        await run_until_idle(app)
        clock.advance(5)  # the retries are due
        await run_until_idle(app)
        await metrics.refresh()
        text = metrics.render().decode()
    s = scrape(text)
    assert value(s, "genqueue_jobs_enqueued_total") == 11
    assert value(s, "genqueue_jobs_succeeded_total") == 8
    assert value(s, "genqueue_jobs_succeeded_total", task="flaky") == 3
    assert value(s, "genqueue_jobs_started_total") == 11 + 3 + 1
    assert value(s, "genqueue_jobs_failed_total", error_kind="server") == 3
    assert value(s, "genqueue_jobs_failed_total", error_kind="network") == 2
    assert value(s, "genqueue_jobs_retried_total") == 4
    assert value(s, "genqueue_jobs_dead_lettered_total", reason="non_retryable") == 2
    assert value(s, "genqueue_jobs_dead_lettered_total", reason="retries_exhausted") == 1
    assert value(s, "genqueue_job_attempts_count", outcome="succeeded") == 8
    assert value(s, "genqueue_job_attempts_sum", outcome="succeeded") == 5 + 2 * 3
    assert value(s, "genqueue_job_duration_seconds_count", outcome="failed") == 3 + 2 + 2
    assert value(s, "genqueue_job_queue_wait_seconds_count") == 15
    # Spend per attempt: 5 + 3 * 2 attempts paid 0.01 each; the 3 failed ones were wasted.
    assert round(value(s, "genqueue_spend_total", unit="usd"), 6) == 0.11
    assert round(value(s, "genqueue_wasted_spend_total", unit="usd"), 6) == 0.03
    # Gauges come from the backend.
    assert value(s, "genqueue_queue_jobs", queue="q", state="completed") == 8
    assert value(s, "genqueue_queue_jobs", queue="q", state="dead") == 3
    assert value(s, "genqueue_queue_jobs", queue="q", state="queued") == 0
    assert value(s, "genqueue_workers") == 0  # the burst workers said goodbye
    assert value(s, "genqueue_build_info") == 1
    # Analytics over the last hour, per task.
    assert value(s, "genqueue_retry_success_ratio", task="flaky") == 1.0
    assert value(s, "genqueue_failure_ratio", task="bad") == 1.0
    assert value(s, "genqueue_failure_ratio", task="ok") == 0.0
    assert value(s, "genqueue_retry_ratio", task="down") == 1.0
    # Bounded labels only: no job id, user or data ever becomes a label.
    assert "user-" not in text and "secret prompt" not in text
    for name, labels in s:
        assert {k for k, _ in labels} <= {
            "queue", "task", "state", "error_kind", "reason", "outcome", "unit", "provider",
            "request", "lane", "version", "le",
        }, name  # fmt: skip


async def test_backlog_age_and_live_workers_are_read_from_the_backend() -> None:
    clock = FakeClock()
    app = App("memory://", clock=clock)
    app.task("t", queue="slow")(_noop)
    metrics = Metrics(app, worker_stale_after=30)
    async with app:
        await app.enqueue("t", {})
        clock.advance(42)
        await app.enqueue("t", {})
        from genqueue import presence

        now = clock.now()
        await presence.beat(app, presence.WorkerInfo("w1", ("slow",), 10, 3, now, now), 30)
        await presence.beat(app, presence.WorkerInfo("w2", ("other",), 5, 0, now, now), 30)
        await metrics.refresh()
        s = scrape(metrics.render().decode())
        assert value(s, "genqueue_queue_oldest_job_age_seconds", queue="slow") == 42
        assert value(s, "genqueue_queue_jobs", queue="slow", state="queued") == 2
        assert value(s, "genqueue_workers", queue="slow") == 1
        assert value(s, "genqueue_worker_slots") == 15
        assert value(s, "genqueue_worker_busy_slots") == 3
        clock.advance(31)  # w1 and w2 stop beating: they are gone
        await metrics.refresh()
        s = scrape(metrics.render().decode())
        assert value(s, "genqueue_workers") == 0
        assert value(s, "genqueue_queue_oldest_job_age_seconds", queue="slow") == 73


async def test_provider_breaker_and_limits_are_gauges() -> None:
    clock = FakeClock()
    app = App("memory://", clock=clock)
    async with app:
        guard = ProviderGuard(app, "pixellab:abc123")
        await guard.admit("job-1")  # workers register the account when they use it
        await guard.record_failure("job-1", "auth", immediate=True)
        metrics = Metrics(app, sources=[provider_readings])
        await metrics.refresh()
        s = scrape(metrics.render().decode())
    key = {"provider": "pixellab:abc123"}
    assert value(s, "genqueue_provider_circuit_state", state="open", **key) == 1
    assert value(s, "genqueue_provider_circuit_state", state="closed", **key) == 0
    assert value(s, "genqueue_provider_in_flight_limit", lane="async", **key) > 0


def test_dead_letter_reasons_are_a_bounded_set() -> None:
    assert dead_letter_reason("retries exhausted (1 of 1 used)") == "retries_exhausted"
    assert dead_letter_reason("auth errors are not retried") == "non_retryable"


async def _noop(ctx: Any) -> None:
    return None
