"""Structured events: names, the emitter, in-process subscribers and JSON log lines.

Every event goes two ways: to stdlib logging on the ``genqueue.events`` logger (the
event name in ``extra["event"]``, its fields in ``extra["fields"]``) and to the callbacks
subscribed to the ``Events`` hub of the app. ``JsonFormatter`` renders any log record,
including these, as one JSON object per line.

Events carry ids, kinds and counts, never job data, results or secrets; error text has
already been redacted by the classifier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from genqueue import serialization
from genqueue.choices import parse_choices
from genqueue.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger("genqueue.events")


class EventName(StrEnum):
    JOB_ENQUEUED = "job_enqueued"
    JOB_STARTED = "job_started"
    JOB_COMPLETED = "job_completed"
    JOB_CANCELLED = "job_cancelled"
    JOB_SNOOZED = "job_snoozed"
    JOB_RELEASED = "job_released"
    JOB_LEASE_LOST = "job_lease_lost"
    #: A sync task's attempt ended (timeout, shutdown) while its thread runs on; the
    #: worker keeps the job's slot and lease until the thread returns.
    ATTEMPT_OVERRUN = "attempt_overrun"
    RETRY_DECISION = "retry_decision"
    QUEUE_RETRY = "queue_retry"
    QUEUE_ERROR = "queue_error"
    QUEUE_DLQ_MOVE = "queue_dlq_move"
    #: Storing a job's move to the DLQ failed (after the batcher's retries): the job is
    #: not in the DLQ yet; it comes back when its lease expires. The alert of that name.
    DLQ_WRITE_FAILED = "dlq_write_failed"
    DLQ_RETRY = "dlq_retry"
    #: An auto-redrive policy sent dead letters back (each also has its ``dlq_retry``).
    DLQ_AUTO_REDRIVE = "dlq_auto_redrive"
    DLQ_DELETE = "dlq_delete"
    DLQ_EXPIRED = "dlq_expired"
    JOBS_EXPIRED = "jobs_expired"
    WORKER_STARTED = "worker_started"
    WORKER_STOPPED = "worker_stopped"
    #: The worker's event loop did not run for longer than the threshold (a task blocked it).
    LOOP_BLOCKED = "loop_blocked"
    CIRCUIT_OPENED = "circuit_opened"
    CIRCUIT_CLOSED = "circuit_closed"
    #: The probe let through a half-open breaker failed: open again, for longer.
    CIRCUIT_PROBE_FAILED = "circuit_probe_failed"
    #: The account balance decided an uncertain submit: ``clear`` or ``charged``.
    SUBMISSION_RECONCILED = "submission_reconciled"
    #: One HTTP request to a provider (logged at DEBUG; metrics count them).
    PROVIDER_REQUEST = "provider_request"


_LEVELS: Mapping[EventName, int] = {
    EventName.PROVIDER_REQUEST: logging.DEBUG,
    EventName.QUEUE_ERROR: logging.WARNING,
    EventName.QUEUE_DLQ_MOVE: logging.ERROR,
    EventName.DLQ_WRITE_FAILED: logging.ERROR,
    EventName.JOB_LEASE_LOST: logging.WARNING,
    EventName.ATTEMPT_OVERRUN: logging.WARNING,
    EventName.LOOP_BLOCKED: logging.WARNING,
    EventName.CIRCUIT_OPENED: logging.WARNING,
    EventName.CIRCUIT_PROBE_FAILED: logging.WARNING,
}


@dataclass(frozen=True, slots=True)
class Event:
    name: EventName
    fields: Mapping[str, Any]
    #: When it happened (epoch seconds), by the app's clock: a ``FakeClock`` in tests.
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name.value, "at": self.at, **self.fields}


Subscriber = Callable[[Event], None]


class Events:
    """The event hub of one app: emit events, subscribe to them.

    Events are stamped with ``clock`` (the ``App`` gives its own clock to a hub that was
    made without one, so ``Event.at`` agrees with the times the app stores).
    """

    def __init__(self, log: logging.Logger | None = None, *, clock: Clock | None = None) -> None:
        self._log = log or logger
        self.clock = clock
        self._subscribers: list[tuple[Subscriber, frozenset[EventName] | None]] = []

    def subscribe(
        self, callback: Subscriber, names: Iterable[EventName | str] | None = None
    ) -> Callable[[], None]:
        """Call ``callback`` for every event (or only those named); returns an unsubscribe."""
        wanted = None if names is None else parse_choices(EventName, names, "event", "events")
        item = (callback, wanted)
        self._subscribers.append(item)

        def unsubscribe() -> None:
            if item in self._subscribers:
                self._subscribers.remove(item)

        return unsubscribe

    def emit(self, name: EventName, **fields: Any) -> None:
        level = _LEVELS.get(name, logging.INFO)
        logged = self._log.isEnabledFor(level)
        if not logged and not self._subscribers:
            return  # the hot path when nobody listens
        event = Event(name, fields, (self.clock or SYSTEM_CLOCK).now())
        if logged:
            self._log.log(
                level,
                "%s %s",
                name.value,
                _summary(fields),
                extra={"event": name.value, "fields": fields},
            )
        for callback, wanted in tuple(self._subscribers):
            if wanted is None or name in wanted:
                try:
                    callback(event)
                except Exception:  # a broken subscriber must not break the queue
                    logging.getLogger("genqueue").exception("event subscriber %r failed", callback)


def _summary(fields: Mapping[str, Any]) -> str:
    keys = ("job_id", "task", "queue", "error_kind", "reason", "count", "delay")
    return " ".join(f"{k}={fields[k]}" for k in keys if fields.get(k) is not None)


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, event and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": serialization.iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            out["event"] = event
            out.update(getattr(record, "fields", {}) or {})
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in ("event", "fields") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return serialization.dumps_str(_jsonable(out))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def configure_logging(level: int = logging.INFO, *, json: bool = False) -> None:
    """Set up the root handler for genqueue's own processes (CLI, worker). Libraries using
    genqueue configure logging themselves."""
    handler = logging.StreamHandler()
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
