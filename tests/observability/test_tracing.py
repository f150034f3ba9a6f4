"""Tracing: a web request's trace goes on through the queue into the worker and the provider.

Spans are exported in memory by the OpenTelemetry SDK; time is a FakeClock.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from genqueue import App, FakeClock, JobContext, JobRequest, JobState, TaskError
from genqueue.backends import Backend
from genqueue.errors import ConfigError, MissingExtra
from genqueue.observability.otel import OtelTracing
from genqueue.observability.tracing import TRACE_META, TRACING_ENV, Tracing
from genqueue.providers.pixellab.client import PixelLabClient
from genqueue.testing import run_until_idle

SECRET = "sk-canary-prompt-5f3e9a"  # in job data, user ids, results and error messages


class Spans:
    """An SDK tracer provider that keeps every finished span in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("tests")

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span

    def all(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()


@pytest.fixture
def traced_app(spans: Spans, clock: FakeClock) -> App:
    return App("memory://", clock=clock, tracing=OtelTracing(tracer_provider=spans.provider))


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def traceparent(span: ReadableSpan) -> str:
    """The W3C header that names ``span`` as the caller."""
    assert span.context is not None
    c = span.context
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


# -- the trace goes on ----------------------------------------------------------------------


async def test_the_worker_continues_the_trace_of_the_request_that_enqueued(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app
    inside: list[tuple[int, int]] = []

    @app.task("images.render", queue="images")
    async def render(ctx: JobContext) -> str:
        with spans.tracer.start_as_current_span("render inside the task") as span:
            inside.append((span.get_span_context().trace_id, span.get_span_context().span_id))
        return "ok"

    async with app:
        with spans.tracer.start_as_current_span("POST /images"):
            job = await app.enqueue("images.render", {"prompt": "a knight"})
        await run_until_idle(app)

    request = spans.one("POST /images")
    send = spans.one("send images")
    process = spans.one("process images")
    task_span = spans.one("render inside the task")
    trace_id = ids(request)[0]
    assert {ids(s)[0] for s in (send, process, task_span)} == {trace_id}
    assert parent_id(send) == ids(request)[1]
    assert parent_id(process) == ids(send)[1]  # parent, not just a link
    assert parent_id(task_span) == ids(process)[1]  # the span is current while the task runs
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert dict(send.attributes or {}) == {
        "messaging.system": "genqueue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "images",
        "messaging.message.id": job.id,
        "genqueue.task.name": "images.render",
    }
    assert dict(process.attributes or {}) == {
        "messaging.system": "genqueue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "images",
        "messaging.message.id": job.id,
        "genqueue.task.name": "images.render",
        "genqueue.job.attempt": 1,
        "genqueue.job.outcome": "completed",
    }
    assert process.status.status_code is StatusCode.UNSET
    assert inside == [ids(task_span)]


async def test_a_sync_task_in_its_thread_sees_the_attempt_span(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app

    @app.task("sync.work")
    def work(ctx: JobContext) -> None:
        with spans.tracer.start_as_current_span("inside the thread"):
            pass

    async with app:
        with spans.tracer.start_as_current_span("request"):
            await app.enqueue("sync.work")
        await run_until_idle(app)

    assert parent_id(spans.one("inside the thread")) == ids(spans.one("process default"))[1]
    assert ids(spans.one("inside the thread"))[0] == ids(spans.one("request"))[0]


async def test_each_job_of_a_batch_carries_the_batch_send_span(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app

    @app.task("a.task", queue="a")
    async def a_task(ctx: JobContext) -> None:
        return None

    @app.task("b.task", queue="b")
    async def b_task(ctx: JobContext) -> None:
        return None

    async with app:
        with spans.tracer.start_as_current_span("request"):
            jobs = await app.queue.enqueue_many(
                [JobRequest("a.task"), JobRequest("a.task"), JobRequest("b.task")]
            )
        await run_until_idle(app)
        stored = [await app.get(job.id) for job in jobs]

    send = spans.one("send")  # two queues: no single destination in the name
    assert send.kind is SpanKind.PRODUCER
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 3
    assert "messaging.destination.name" not in send.attributes
    assert "messaging.message.id" not in send.attributes
    processes = spans.named("process a") + spans.named("process b")
    assert sorted(s.attributes["messaging.message.id"] for s in processes if s.attributes) == (
        sorted(job.id for job in jobs)
    )
    assert {parent_id(s) for s in processes} == {ids(send)[1]}
    assert {job.state for job in stored} == {JobState.COMPLETED}


async def test_the_trace_context_survives_every_backend(
    make_backend: Callable[[], Backend], clock: FakeClock, spans: Spans
) -> None:
    app = App(make_backend(), clock=clock, tracing=OtelTracing(tracer_provider=spans.provider))

    @app.task("echo")
    async def echo(ctx: JobContext) -> None:
        return None

    async with app:
        with spans.tracer.start_as_current_span("request"):
            job = await app.enqueue("echo", {"n": 1})
        stored = await app.get(job.id)
        await run_until_idle(app)

    send = spans.one("send default")
    assert stored.meta[TRACE_META] == {"traceparent": traceparent(send)}
    assert parent_id(spans.one("process default")) == ids(send)[1]


async def test_a_job_enqueued_outside_any_trace_starts_its_own(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app

    @app.task("echo")
    async def echo(ctx: JobContext) -> None:
        return None

    async with app:
        first = await app.enqueue("echo")
        second = await app.enqueue("echo")
        await run_until_idle(app)
        done = [await app.get(j.id) for j in (first, second)]

    sends = spans.named("send default")
    processes = spans.named("process default")
    assert len(sends) == 2 and len(processes) == 2
    assert all(s.parent is None for s in sends)
    assert {parent_id(p) for p in processes} == {ids(s)[1] for s in sends}
    assert len({ids(s)[0] for s in sends}) == 2  # two traces
    assert {j.state for j in done} == {JobState.COMPLETED}


async def test_a_malformed_carried_context_gives_a_root_span_and_the_job_runs(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app

    @app.task("echo")
    async def echo(ctx: JobContext) -> None:
        return None

    async with app:
        odd = app.queue.build(JobRequest("echo"), await app.backend.time())
        odd.meta[TRACE_META] = {"traceparent": "not-a-traceparent", "tracestate": 7}
        await app.backend.enqueue([odd])
        await run_until_idle(app)
        odd = await app.get(odd.id)

    assert odd.state is JobState.COMPLETED
    assert spans.one("process default").parent is None


# -- failures -------------------------------------------------------------------------------


async def test_a_failed_attempt_is_an_error_span_with_its_kind_and_the_retry_continues(
    traced_app: App, spans: Spans, clock: FakeClock
) -> None:
    app = traced_app
    calls = 0

    @app.task("flaky", max_retries=1)
    async def flaky(ctx: JobContext) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TaskError(f"upstream 503 for {SECRET}", kind="server")
        return "ok"

    async with app:
        with spans.tracer.start_as_current_span("request"):
            job = await app.enqueue("flaky")
        await run_until_idle(app)
        clock.advance(3600)
        await run_until_idle(app)
        assert (await app.get(job.id)).state is JobState.COMPLETED

    send = spans.one("send default")
    failed, retried = spans.named("process default")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "server"
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "server"
    assert failed.attributes["genqueue.job.outcome"] == "failed"
    assert failed.attributes["genqueue.error.retryable"] is True
    assert failed.attributes["genqueue.job.attempt"] == 1
    assert failed.events == ()  # no exception event: its message may quote job data
    assert retried.attributes is not None
    assert retried.attributes["genqueue.job.attempt"] == 2
    assert retried.attributes["genqueue.job.outcome"] == "completed"
    assert retried.status.status_code is StatusCode.UNSET
    assert {parent_id(failed), parent_id(retried)} == {ids(send)[1]}


async def test_no_span_holds_job_data_user_ids_results_or_error_messages(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app

    @app.task("leaky", max_retries=0)
    async def leaky(ctx: JobContext) -> None:
        raise ValueError(f"bad prompt {ctx.data['prompt']}")

    @app.task("fine")
    async def fine(ctx: JobContext) -> dict[str, str]:
        return {"echo": ctx.data["prompt"]}

    async with app:
        token = context.attach(baggage.set_baggage("user.secret", SECRET))
        try:
            with spans.tracer.start_as_current_span("request"):
                jobs = [
                    await app.enqueue(name, {"prompt": SECRET}, user_id=f"user-{SECRET}")
                    for name in ("leaky", "fine")
                ]
                await app.queue.enqueue_many(
                    [JobRequest("fine", {"prompt": SECRET}, idempotency_key=SECRET)]
                )
        finally:
            context.detach(token)
        await run_until_idle(app)
        stored = [await app.get(job.id) for job in jobs]

    assert [job.state for job in stored] == [JobState.DEAD, JobState.COMPLETED]
    assert len(spans.named("process default")) == 3
    for span in spans.all():
        shown = [*(span.attributes or {}).values(), span.status.description, span.name]
        shown += [str(event.attributes) for event in span.events]
        assert not any(SECRET in str(value) for value in shown), span.name
    # Baggage (which may hold user data) is not carried in the job.
    for job in stored:
        assert set(job.meta[TRACE_META]) == {"traceparent"}
        assert SECRET not in str(job.meta)


# -- the provider's HTTP calls ------------------------------------------------------------


async def test_provider_http_calls_carry_the_traceparent_of_the_attempt(
    traced_app: App, spans: Spans
) -> None:
    app = traced_app
    headers: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={"usd": 1.0})

    @app.task("with.provider")
    async def with_provider(ctx: JobContext) -> None:
        client = PixelLabClient(
            "key-0000",
            base_url="http://pixellab.test/v2",
            transport=httpx.MockTransport(answer),
            event_hooks=ctx.app.tracing.http_hooks(),
        )
        try:
            await client.balance()
        finally:
            await client.aclose()

    async with app:
        with spans.tracer.start_as_current_span("request"):
            await app.enqueue("with.provider")
        await run_until_idle(app)

    assert headers == [traceparent(spans.one("process default"))]


async def test_the_pixellab_task_sends_traceparent_to_pixellab(
    spans: Spans, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genqueue.providers.fake_pixellab import FakeOptions, FakePixelLab
    from genqueue.providers.pixellab import register
    from genqueue.providers.pixellab import task as pixellab_task
    from tests.providers.conftest import KEY
    from tests.providers.pixellab_helpers import PIXFLUX, settings

    seen: list[tuple[str, str | None]] = []

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append((request.url.path, request.headers.get("traceparent")))
            return await super().handle_async_request(request)

    monkeypatch.setattr(
        pixellab_task, "PixelLabClient", functools.partial(PixelLabClient, transport=Recording())
    )
    fake = FakePixelLab(FakeOptions(tokens={KEY: "main"})).start()
    app = App("memory://", clock=clock, tracing=OtelTracing(tracer_provider=spans.provider))
    integration = register(app, settings(fake, tmp_path / "out"))
    try:
        async with app:
            with spans.tracer.start_as_current_span("POST /sprites"):
                job = await app.enqueue(
                    "pixellab.generate", {"operation": "create-image-pixflux", "params": PIXFLUX}
                )
            # The first attempt takes a reading of the balance and waits (snoozed).
            for _ in range(10):
                await run_until_idle(app)
                if (await app.get(job.id)).state is not JobState.SCHEDULED:
                    break
                clock.advance(1)
            assert (await app.get(job.id)).state is JobState.COMPLETED
    finally:
        await integration.aclose()
        fake.stop()

    *waited, submitted = spans.named("process pixellab")
    assert submitted.attributes is not None
    assert submitted.attributes["genqueue.job.outcome"] == "completed"
    assert {ids(s)[0] for s in [*waited, submitted]} == {ids(spans.one("POST /sprites"))[0]}
    submits = [header for path, header in seen if path.endswith("/create-image-pixflux")]
    assert submits == [traceparent(submitted)]
    # Every request went out inside an attempt (the balance readings too), and said which.
    assert {header for _, header in seen} <= {traceparent(s) for s in [*waited, submitted]}


# -- switched off, or not installed ----------------------------------------------------------


async def test_blocking_producers_continue_the_callers_trace(spans: Spans, tmp_path: Path) -> None:
    app = App(
        f"sqlite:///{tmp_path / 'q.db'}",
        tracing=OtelTracing(tracer_provider=spans.provider),
    )

    @app.task("echo")
    def echo(ctx: JobContext) -> None:
        return None

    def flask_view() -> None:
        with app.blocking() as client, spans.tracer.start_as_current_span("GET /flask"):
            client.enqueue("echo")

    await asyncio.to_thread(flask_view)
    assert parent_id(spans.one("send default")) == ids(spans.one("GET /flask"))[1]


def test_tracing_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACING_ENV, raising=False)
    assert not App("memory://").tracing.enabled
    assert not App("memory://", tracing=False).tracing.enabled
    assert App("memory://", tracing=True).tracing.enabled
    monkeypatch.setenv(TRACING_ENV, "1")
    assert App("memory://").tracing.enabled
    assert not App("memory://", tracing=False).tracing.enabled
    monkeypatch.setenv(TRACING_ENV, "maybe")
    with pytest.raises(ConfigError, match="GENQUEUE_OTEL must be 1 or 0"):
        App("memory://")


async def test_the_interrupted_attempt_is_marked_and_not_an_error(spans: Spans) -> None:
    tracing = OtelTracing(tracer_provider=spans.provider)
    app = App("memory://", tracing=tracing)

    @app.task("slow")
    async def slow(ctx: JobContext) -> None:
        return None

    async with app:
        job = await app.enqueue("slow")
    with pytest.raises(asyncio.CancelledError), tracing.attempt(job):
        raise asyncio.CancelledError  # the worker's own cancellation (shutdown, lost lease)

    span = spans.one("process default")
    assert span.attributes is not None
    assert span.attributes["genqueue.job.outcome"] == "interrupted"
    assert span.status.status_code is StatusCode.UNSET


@pytest.fixture
def without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import opentelemetry`` fail, as when the extra is not installed."""
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "genqueue.observability.otel")
    monkeypatch.delenv(TRACING_ENV, raising=False)


@pytest.mark.usefixtures("without_opentelemetry")
async def test_without_the_extra_nothing_breaks(clock: FakeClock) -> None:
    app = App("memory://", clock=clock)
    assert type(app.tracing) is Tracing

    @app.task("fails", max_retries=0)
    async def fails(ctx: JobContext) -> None:
        raise TaskError("nope", kind="server")

    @app.task("works")
    async def works(ctx: JobContext) -> str:
        return "ok"

    async with app:
        jobs = [await app.enqueue("works"), await app.enqueue("fails")]
        jobs += await app.queue.enqueue_many([JobRequest("works"), JobRequest("works")])
        await run_until_idle(app)
        stored = [await app.get(job.id) for job in jobs]
    assert [job.state for job in stored] == [JobState.COMPLETED, JobState.DEAD] + [
        JobState.COMPLETED
    ] * 2
    assert all(TRACE_META not in job.meta for job in stored)
    assert app.tracing.http_hooks() == {}


@pytest.mark.usefixtures("without_opentelemetry")
def test_asking_for_tracing_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(MissingExtra, match=r"pip install 'genqueue\[otel\]'"):
        App("memory://", tracing=True)
    monkeypatch.setenv(TRACING_ENV, "1")
    with pytest.raises(MissingExtra, match="opentelemetry-api is not installed"):
        App("memory://")


def test_genqueue_never_imports_opentelemetry_unless_asked() -> None:
    script = """
import asyncio, sys
import genqueue
from genqueue.testing import run_until_idle

app = genqueue.App("memory://")

@app.task("echo")
async def echo(ctx):
    return None

async def main():
    async with app:
        await app.enqueue("echo")
        await run_until_idle(app)

asyncio.run(main())
loaded = sorted(n for n in sys.modules if n.split(".")[0] == "opentelemetry")
print(loaded)
"""
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert done.stdout.strip() == "[]"
    assert "opentelemetry" not in done.stderr  # -X importtime lists every import
