"""The counters and histograms of one process, moved by the app's events.

Each worker (or producer) process counts what *it* did; Prometheus adds the processes up
(``sum(rate(genqueue_jobs_succeeded_total[5m]))``). Labels are bounded: queue, task,
error kind, a reason class, provider account (a hash), request kind, unit. Never a job id,
a user, a prompt or a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from genqueue.events import Event, EventName

#: Seconds, from a fast no-op to a slow generation that polls for many minutes.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 7, 10, 15, 20)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

QT = ("queue", "task")


def dead_letter_reason(reason: str) -> str:
    """A bounded label for why a job was dead-lettered (the reason text is free-form)."""
    return "retries_exhausted" if reason.startswith("retries exhausted") else "non_retryable"


class Instruments:
    """Every event-driven metric of one process, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        p = "genqueue_"
        self.enqueued = counter(f"{p}jobs_enqueued", "Jobs accepted by enqueue.", QT)
        self.started = counter(f"{p}jobs_started", "Attempts started.", QT)
        self.succeeded = counter(f"{p}jobs_succeeded", "Jobs completed.", QT)
        self.failed = counter(
            f"{p}jobs_failed", "Failed attempts, by error kind.", (*QT, "error_kind")
        )
        self.retried = counter(f"{p}jobs_retried", "Failed attempts scheduled to retry.", QT)
        self.dead = counter(
            f"{p}jobs_dead_lettered",
            "Jobs moved to the dead letter queue.",
            (*QT, "reason", "error_kind"),
        )
        self.redriven = counter(f"{p}jobs_redriven", "Dead letters sent back to run.", QT)
        self.cancelled = counter(f"{p}jobs_cancelled", "Jobs cancelled.", QT)
        self.snoozed = counter(f"{p}jobs_snoozed", "Attempts that snoozed (no retry used).", QT)
        self.dlq_deleted = counter(f"{p}dlq_deleted", "Dead letters deleted or purged.", ())
        self.dlq_expired = counter(f"{p}dlq_expired", "Dead letters removed by retention.", ())
        self.spend = counter(f"{p}spend", "What attempts cost at the provider.", ("task", "unit"))
        self.wasted = counter(
            f"{p}wasted_spend",
            "What failed or cancelled attempts cost (paid, no result).",
            ("task", "unit"),
        )
        self.duration = histogram(
            f"{p}job_duration_seconds",
            "Attempt run time.",
            (*QT, "outcome"),
            DURATION_BUCKETS,
        )
        self.wait = histogram(
            f"{p}job_queue_wait_seconds",
            "From due to started (deliberate delays excluded).",
            QT,
            WAIT_BUCKETS,
        )
        self.attempts = histogram(
            f"{p}job_attempts", "Attempts a finished job took.", (*QT, "outcome"), ATTEMPT_BUCKETS
        )
        self.requests = counter(
            f"{p}provider_requests",
            "HTTP requests to a provider, by outcome (status code, timeout, error).",
            ("provider", "request", "outcome"),
        )
        self.request_seconds = histogram(
            f"{p}provider_request_duration_seconds",
            "Provider HTTP request time.",
            ("provider", "request"),
            REQUEST_BUCKETS,
        )
        self.rate_limited = counter(
            f"{p}provider_rate_limited", "Provider answers of 429 (rate limited).", ("provider",)
        )
        self._handlers: Mapping[EventName, Callable[[Mapping[str, Any]], None]] = {
            EventName.JOB_ENQUEUED: lambda f: self.enqueued.labels(*_qt(f)).inc(),
            EventName.JOB_STARTED: self._on_started,
            EventName.JOB_COMPLETED: self._on_completed,
            EventName.QUEUE_ERROR: self._on_error,
            EventName.QUEUE_RETRY: lambda f: self.retried.labels(*_qt(f)).inc(),
            EventName.QUEUE_DLQ_MOVE: self._on_dead,
            EventName.DLQ_RETRY: lambda f: self.redriven.labels(*_qt(f)).inc(),
            EventName.JOB_CANCELLED: self._on_cancelled,
            EventName.JOB_SNOOZED: self._on_snoozed,
            EventName.JOB_RELEASED: lambda f: self._spend(f, wasted=False),
            EventName.DLQ_DELETE: lambda f: self.dlq_deleted.inc(int(f.get("count", 1))),
            EventName.DLQ_EXPIRED: lambda f: self.dlq_expired.inc(int(f.get("count", 0))),
            EventName.PROVIDER_REQUEST: self._on_request,
        }

    @property
    def names(self) -> frozenset[EventName]:
        return frozenset(self._handlers)

    def on_event(self, event: Event) -> None:
        handler = self._handlers.get(event.name)
        if handler is not None:
            handler(event.fields)

    def _on_started(self, f: Mapping[str, Any]) -> None:
        self.started.labels(*_qt(f)).inc()
        if f.get("waited") is not None:
            self.wait.labels(*_qt(f)).observe(float(f["waited"]))

    def _on_completed(self, f: Mapping[str, Any]) -> None:
        self.succeeded.labels(*_qt(f)).inc()
        self.duration.labels(*_qt(f), "succeeded").observe(float(f.get("duration") or 0.0))
        self.attempts.labels(*_qt(f), "succeeded").observe(int(f.get("attempt") or 1))
        self._spend(f, wasted=False)

    def _on_error(self, f: Mapping[str, Any]) -> None:
        self.failed.labels(*_qt(f), f.get("error_kind", "unknown")).inc()
        if f.get("duration") is not None:
            self.duration.labels(*_qt(f), "failed").observe(float(f["duration"]))
        self._spend(f, wasted=True)

    def _on_dead(self, f: Mapping[str, Any]) -> None:
        reason = dead_letter_reason(str(f.get("reason", "")))
        self.dead.labels(*_qt(f), reason, f.get("error_kind", "unknown")).inc()
        self.attempts.labels(*_qt(f), "dead").observe(int(f.get("attempt") or 1))

    def _on_cancelled(self, f: Mapping[str, Any]) -> None:
        self.cancelled.labels(*_qt(f)).inc()
        self._spend(f, wasted=True)

    def _on_snoozed(self, f: Mapping[str, Any]) -> None:
        self.snoozed.labels(*_qt(f)).inc()
        self._spend(f, wasted=False)

    def _on_request(self, f: Mapping[str, Any]) -> None:
        provider, request, outcome = f["provider"], f["request"], str(f["outcome"])
        self.requests.labels(provider, request, outcome).inc()
        self.request_seconds.labels(provider, request).observe(float(f["seconds"]))
        if outcome == "429":
            self.rate_limited.labels(provider).inc()

    def _spend(self, f: Mapping[str, Any], *, wasted: bool) -> None:
        """Count what one attempt cost; a failed or cancelled attempt's cost is wasted."""
        task = str(f.get("task", ""))
        for unit, amount in (f.get("attempt_cost") or {}).items():
            self.spend.labels(task, unit).inc(float(amount))
            if wasted:
                self.wasted.labels(task, unit).inc(float(amount))


def _qt(fields: Mapping[str, Any]) -> tuple[str, str]:
    return str(fields.get("queue", "")), str(fields.get("task", ""))
