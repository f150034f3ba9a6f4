"""The exception tree of genqueue.

Every exception genqueue raises on purpose derives from ``GenqueueError``; a class's
docstring is its default message::

    GenqueueError
    ├── ConfigError                 settings, URLs, app paths, missing extras
    │   └── MissingExtra
    ├── InvalidInput (ValueError)   bad input from a caller; nothing was stored
    │   ├── UnknownTask
    │   ├── InvalidJobId
    │   └── IdempotencyConflict     the key is held by a pending job with other data
    ├── NotFound (LookupError)
    │   ├── JobNotFound
    │   │   └── JobGone             ``wait()`` saw the job, then it was deleted
    │   └── DeadLetterNotFound
    ├── StateError                  the operation is not allowed in the job's state
    │   ├── IllegalTransition
    │   └── RedriveRefused
    ├── BackendError                the storage failed or is unreachable
    │   └── StorageCorrupt          the stored data is damaged; fatal, never retried
    ├── WaitTimeout (TimeoutError)  ``wait()`` gave up before the job finished
    └── JobFailed                   ``wait()`` saw the job end dead or cancelled

Exceptions a *task* raises to steer its own job (``Retry``, ``Snooze``, ``Cancel``) are
not errors and live in ``genqueue.signals``.  ``TaskError`` (in ``genqueue.classify``)
is what tasks and providers raise to report a failure of a known kind.
"""

from __future__ import annotations

from typing import Any


class GenqueueError(Exception):
    """genqueue failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(GenqueueError):
    """The configuration is invalid."""


class MissingExtra(ConfigError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'genqueue[{extra}]'"
        )


class InvalidInput(GenqueueError, ValueError):
    """The input is invalid; nothing was stored."""

    #: Raised inside a task, bad input is a validation failure (never retried).
    error_kind = "validation"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownTask(InvalidInput):
    """No task with that name is registered."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f"; registered tasks: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown task {name!r}{hint}", field="task")
        self.name = name


class InvalidJobId(InvalidInput):
    """A job id is 32 hexadecimal characters."""

    def __init__(self, value: object) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(
            f"invalid job id {shown}: a job id is 32 hexadecimal characters", field="id"
        )


class IdempotencyConflict(InvalidInput):
    """The idempotency key is already used by a pending job with different data."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} is already used by job {job_id} with different data; "
            "nothing was stored (send the same data to get that job back, or use a new key)",
            field="idempotency_key",
        )
        self.key = key
        self.job_id = job_id


class NotFound(GenqueueError, LookupError):
    """Nothing was found."""


class JobNotFound(NotFound):
    """No job has that id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class JobGone(JobNotFound):
    """The job finished and was deleted before its result was read."""

    def __init__(self, job_id: str) -> None:
        NotFound.__init__(
            self,
            f"job {job_id} finished and was deleted before its result was read: its task "
            "keeps no finished jobs (keep_finished=0), or it was purged",
        )
        self.job_id = job_id


class DeadLetterNotFound(NotFound):
    """The dead letter queue has no entry for that job id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"no dead letter entry for job {job_id} (it may have been redriven, deleted "
            "or expired; `genqueue dlq list` shows what is there)"
        )
        self.job_id = job_id


class StateError(GenqueueError):
    """The operation is not allowed in the job's current state."""


class IllegalTransition(StateError):
    """A job cannot move between those states."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class RedriveRefused(StateError):
    """The dead letter entry cannot be redriven."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"cannot redrive job {job_id}: {reason}")
        self.job_id = job_id
        self.reason = reason


class BackendError(GenqueueError):
    """The storage backend failed."""


class StorageCorrupt(BackendError):
    """The storage is damaged; genqueue will not write to it."""

    def __init__(self, message: str | None = None, *, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location


class WaitTimeout(GenqueueError, TimeoutError):
    """The job did not finish in time."""


class JobFailed(GenqueueError):
    """The job did not complete."""

    def __init__(self, job: Any) -> None:
        error = getattr(job, "last_error", None)
        detail = f": {error.kind}: {error.message}" if error is not None else ""
        super().__init__(f"job {job.id} ended {job.state.value}{detail}")
        self.job = job
