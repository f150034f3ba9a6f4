"""OpenTelemetry spans for enqueue and for each attempt; loaded only when tracing is on.

Spans follow OpenTelemetry's messaging semantic conventions (``messaging.system`` is
``genqueue``, the destination is the queue):

* **Enqueue**: one PRODUCER span ``send <queue>`` per enqueue call, current while the
  jobs are stored; a batch is one span with ``messaging.batch.message_count``. Its W3C
  context (``traceparent``, ``tracestate``; never baggage, which may hold user data) goes
  into each job's ``meta["trace"]``, plain JSON, so every backend stores it as it is.
* **Attempt**: a CONSUMER span ``process <queue>`` whose *parent* is the context the job
  carries, so the trace of the web request that enqueued the job goes on in the worker
  (a job enqueued outside any trace starts a trace of its own). It is current while the
  task runs, so spans the task opens and the provider's HTTP calls are its children, and
  the httpx hook sends ``traceparent`` to the provider.

Attributes are names, ids and counts only: queue, task name, job id, attempt number,
outcome, error kind. Never job data, user ids, prompts, results or error messages (which
may quote any of them), hence no exception events either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from genqueue.observability.tracing import TRACE_META, AttemptSpan, HttpHook, Tracing

if TYPE_CHECKING:
    from genqueue.execution import Outcome
    from genqueue.job import Job

SYSTEM = "genqueue"
# Attribute names: messaging semantic conventions, then genqueue's own.
MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
TASK_NAME = "genqueue.task.name"
ATTEMPT = "genqueue.job.attempt"
OUTCOME = "genqueue.job.outcome"
RETRYABLE = "genqueue.error.retryable"

_CARRIED = ("traceparent", "tracestate")
# Only the W3C trace context travels: the global propagator may add baggage.
_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing(Tracing):
    """Tracing on: spans from ``tracer_provider`` (default: the global one)."""

    enabled = True

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from genqueue import __version__  # the package is fully imported by now

        # With no provider given, the global one is looked up when spans start, so one set
        # up after the app was built (opentelemetry-instrument, a later
        # set_tracer_provider) is still used.
        self._tracer = trace.get_tracer(SYSTEM, __version__, tracer_provider=tracer_provider)

    @contextlib.contextmanager
    def send(self, jobs: Sequence[Job]) -> Iterator[None]:
        if not jobs:
            yield
            return
        queues = {job.queue for job in jobs}
        queue = next(iter(queues)) if len(queues) == 1 else None
        attributes: dict[str, str | int] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "send",
        }
        if queue is not None:
            attributes[DESTINATION] = queue
        if len(jobs) == 1:
            attributes[MESSAGE_ID] = jobs[0].id
            attributes[TASK_NAME] = jobs[0].task
        else:
            attributes[BATCH_COUNT] = len(jobs)
        with self._tracer.start_as_current_span(
            f"send {queue}" if queue is not None else "send",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            record_exception=False,  # an exception's message may quote job data
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
            if carrier:
                for job in jobs:
                    job.meta[TRACE_META] = dict(carrier)
            try:
                yield
            except BaseException as exc:
                _failed(span, type(exc).__name__)
                raise

    @contextlib.contextmanager
    def attempt(self, job: Job) -> Iterator[AttemptSpan]:
        parent = _PROPAGATOR.extract(carried(job.meta))
        span = self._tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                MESSAGING_SYSTEM: SYSTEM,
                OPERATION_TYPE: "process",
                OPERATION_NAME: "process",
                DESTINATION: job.queue,
                MESSAGE_ID: job.id,
                TASK_NAME: job.task,
                ATTEMPT: job.attempts,
            },
        )
        recorder = _AttemptRecorder(span)
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                yield recorder
            except BaseException:
                # The worker stopped the attempt (shutdown, lost lease): not a task failure.
                if not recorder.recorded:
                    span.set_attribute(OUTCOME, "interrupted")
                raise

    def http_hooks(self) -> dict[str, list[HttpHook]]:
        return {"request": [inject_traceparent]}


class _AttemptRecorder(AttemptSpan):
    def __init__(self, span: Span) -> None:
        self.span = span
        self.recorded = False

    def ended(self, outcome: Outcome) -> Outcome:
        self.recorded = True
        self.span.set_attribute(OUTCOME, outcome.kind.value)
        error = outcome.error
        if error is not None:
            self.span.set_attribute(RETRYABLE, error.retryable)
            _failed(self.span, error.kind.value)
        return outcome


def _failed(span: Span, error_type: str) -> None:
    # The status says which kind of failure, never its message.
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def carried(meta: Mapping[str, Any]) -> dict[str, str]:
    """The W3C trace context a job carries (empty if none, or not in the expected shape)."""
    raw = meta.get(TRACE_META)
    if not isinstance(raw, Mapping):
        return {}
    return {key: raw[key] for key in _CARRIED if isinstance(raw.get(key), str)}


async def inject_traceparent(request: httpx.Request) -> None:
    """httpx request hook: send the current span's context (the attempt's) along."""
    _PROPAGATOR.inject(request.headers)
