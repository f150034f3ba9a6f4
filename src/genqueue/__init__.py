"""genqueue: a job queue for AI generation work.

Failures are classified, transient ones are retried with capped, jittered exponential
backoff, and jobs that cannot succeed land in a dead letter queue that loses nothing.
Runs on an embedded SQLite file by default, or on Redis.

Names are imported when first used (PEP 562), so ``import genqueue.cli.main`` or
``from genqueue import App`` loads only what it needs: a command line that starts
fast does not pay for the worker or the providers.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.classify import (
        ClassifiedError,
        ClassifierRules,
        ErrorClassifier,
        ErrorKind,
        TaskError,
    )
    from genqueue.clock import FakeClock, SystemClock
    from genqueue.context import JobContext, LeaseLost
    from genqueue.deadletter import DeadLetterQueue, RedriveReport
    from genqueue.entry import DeadLetter, DLQFilter, DLQStats, Page
    from genqueue.errors import (
        BackendError,
        ConfigError,
        DeadLetterNotFound,
        GenqueueError,
        IdempotencyConflict,
        IllegalTransition,
        InvalidInput,
        InvalidJobId,
        JobFailed,
        JobGone,
        JobNotFound,
        NotFound,
        RedriveRefused,
        StateError,
        StorageCorrupt,
        UnknownTask,
        WaitTimeout,
    )
    from genqueue.events import Event, EventName, Events, JsonFormatter
    from genqueue.job import Attempt, AttemptOutcome, Job, JobState, Progress
    from genqueue.queue import JobRequest
    from genqueue.retry import RetryDecision, RetryPolicy
    from genqueue.settings import QueueOptions, Retention, WorkerSettings
    from genqueue.signals import Cancel, Retry, Snooze
    from genqueue.task import Task
    from genqueue.worker import Worker

__version__ = "0.1.0"

# A library logs; the application decides where logs go. Without this, Python's
# last-resort handler would print genqueue's warnings to stderr of apps that never
# configured logging (the logging HOWTO's advice for libraries).
logging.getLogger("genqueue").addHandler(logging.NullHandler())

#: Where each public name lives; ``__getattr__`` imports it on first use.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "genqueue.app": ("App",),
    "genqueue.classify": (
        "ClassifiedError",
        "ClassifierRules",
        "ErrorClassifier",
        "ErrorKind",
        "TaskError",
    ),
    "genqueue.clock": ("FakeClock", "SystemClock"),
    "genqueue.context": ("JobContext", "LeaseLost"),
    "genqueue.deadletter": ("DeadLetterQueue", "RedriveReport"),
    "genqueue.entry": ("DeadLetter", "DLQFilter", "DLQStats", "Page"),
    "genqueue.errors": (
        "BackendError",
        "ConfigError",
        "DeadLetterNotFound",
        "GenqueueError",
        "IdempotencyConflict",
        "IllegalTransition",
        "InvalidInput",
        "InvalidJobId",
        "JobFailed",
        "JobGone",
        "JobNotFound",
        "NotFound",
        "RedriveRefused",
        "StateError",
        "StorageCorrupt",
        "UnknownTask",
        "WaitTimeout",
    ),
    "genqueue.events": ("Event", "EventName", "Events", "JsonFormatter"),
    "genqueue.job": ("Attempt", "AttemptOutcome", "Job", "JobState", "Progress"),
    "genqueue.queue": ("JobRequest",),
    "genqueue.retry": ("RetryDecision", "RetryPolicy"),
    "genqueue.settings": ("QueueOptions", "Retention", "WorkerSettings"),
    "genqueue.signals": ("Cancel", "Retry", "Snooze"),
    "genqueue.task": ("Task",),
    "genqueue.worker": ("Worker",),
}

__all__ = [
    "App",
    "Attempt",
    "AttemptOutcome",
    "BackendError",
    "Cancel",
    "ClassifiedError",
    "ClassifierRules",
    "ConfigError",
    "DLQFilter",
    "DLQStats",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadLetterQueue",
    "ErrorClassifier",
    "ErrorKind",
    "Event",
    "EventName",
    "Events",
    "FakeClock",
    "GenqueueError",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidInput",
    "InvalidJobId",
    "Job",
    "JobContext",
    "JobFailed",
    "JobGone",
    "JobNotFound",
    "JobRequest",
    "JobState",
    "JsonFormatter",
    "LeaseLost",
    "NotFound",
    "Page",
    "Progress",
    "QueueOptions",
    "RedriveRefused",
    "RedriveReport",
    "Retention",
    "Retry",
    "RetryDecision",
    "RetryPolicy",
    "Snooze",
    "StateError",
    "StorageCorrupt",
    "SystemClock",
    "Task",
    "TaskError",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "WorkerSettings",
    "__version__",
]


_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'genqueue' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
