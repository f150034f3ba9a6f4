"""The job: its fields, its states and the moves allowed between them.

A ``Job`` is plain data. ``JobState`` is stored, never inferred; ``TRANSITIONS`` is the
whole state machine: every change of state in genqueue is a ``backends.base.Move``, which
refuses a transition the table does not allow. Records (``to_record``/``from_record``)
are the JSON-ready form that backends store; ``to_public`` is the form shown to people
and scripts (ISO times).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from genqueue.classify import ClassifiedError
from genqueue.errors import InvalidJobId
from genqueue.serialization import iso


class JobState(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    RETRYING = "retrying"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"


S = JobState
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.ACTIVE, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.ACTIVE, S.CANCELLED}),
    S.RETRYING: frozenset({S.QUEUED, S.ACTIVE, S.CANCELLED}),
    # active -> queued is a release at shutdown; -> scheduled is a snooze.
    S.ACTIVE: frozenset({S.COMPLETED, S.RETRYING, S.SCHEDULED, S.QUEUED, S.DEAD, S.CANCELLED}),
    S.DEAD: frozenset({S.QUEUED}),  # redrive
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Waiting to run: due now (queued) or later (scheduled, retrying).
PENDING_STATES = frozenset({S.QUEUED, S.SCHEDULED, S.RETRYING})
#: Waiting for a due time before they can be fetched.
DELAYED_STATES = frozenset({S.SCHEDULED, S.RETRYING})
#: Done: nothing will run the job again unless an operator redrives a dead one.
TERMINAL_STATES = frozenset({S.COMPLETED, S.DEAD, S.CANCELLED})
#: Removed by retention once older than the completed/cancelled retention.
EXPIRING_STATES = frozenset({S.COMPLETED, S.CANCELLED})
CANCELLABLE_STATES = PENDING_STATES | {S.ACTIVE}


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"  # failed and retried, or retried on request (Retry signal)
    DEAD = "dead"  # failed and moved to the DLQ
    SNOOZED = "snoozed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # released back to the queue by a graceful shutdown


# Lookups by value: calling an enum class is slow, and a page of jobs decodes thousands.
_STATES: Mapping[Any, JobState] = {state.value: state for state in JobState}
_OUTCOMES: Mapping[Any, AttemptOutcome] = {outcome.value: outcome for outcome in AttemptOutcome}


def _state(value: Any) -> JobState:
    found = _STATES.get(value) if isinstance(value, str) else None
    return found if found is not None else JobState(value)  # raises on an unknown state


_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    """A random 128-bit id as 32 hex characters."""
    return secrets.token_hex(16)


def check_job_id(value: object) -> str:
    """Normalise and validate a job id (32 hex characters; a dashed UUID is accepted)."""
    if not isinstance(value, str):
        raise InvalidJobId(value)
    text = value.strip().lower().replace("-", "") if len(value) == 36 else value.strip().lower()
    if not _ID_RE.match(text):
        raise InvalidJobId(value)
    return text


@dataclass(slots=True)
class Progress:
    percent: float
    message: str | None
    updated_at: float

    def to_record(self) -> dict[str, Any]:
        return {"percent": self.percent, "message": self.message, "updated_at": self.updated_at}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any] | None) -> Progress | None:
        if not raw:
            return None
        return cls(
            float(raw.get("percent", 0)), raw.get("message"), float(raw.get("updated_at", 0))
        )


@dataclass(slots=True)
class Attempt:
    """One run of a job: when, where, how long, and how it ended."""

    number: int
    started_at: float
    finished_at: float
    worker: str | None
    outcome: AttemptOutcome
    error: ClassifiedError | None = None
    delay: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_record(self) -> dict[str, Any]:
        """The stored form: compact (no derived duration, no empty fields)."""
        out: dict[str, Any] = {
            "number": self.number,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome.value,
        }
        if self.worker is not None:
            out["worker"] = self.worker
        if self.error is not None:
            out["error"] = self.error.to_dict()
        if self.delay is not None:
            out["delay"] = self.delay
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> Attempt:
        error = raw.get("error")
        outcome = _OUTCOMES.get(str(raw.get("outcome")), AttemptOutcome.FAILED)
        return cls(
            number=int(raw.get("number", 0)),
            started_at=float(raw.get("started_at", 0)),
            finished_at=float(raw.get("finished_at", 0)),
            worker=raw.get("worker"),
            outcome=outcome,
            error=ClassifiedError.from_dict(error) if error else None,
            delay=raw.get("delay"),
            details=dict(raw.get("details") or {}),
        )

    def to_public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": round(self.duration, 6),
            "worker": self.worker,
            "outcome": self.outcome.value,
            "error": self.error.to_dict() if self.error else None,
            "delay": self.delay,
        }
        if self.details:
            out["details"] = self.details
        return out


@dataclass(slots=True)
class Job:
    id: str
    task: str
    created_at: float
    run_at: float
    queue: str = "default"
    data: Any = None
    user_id: str | None = None
    idempotency_key: str | None = None
    state: JobState = JobState.QUEUED
    updated_at: float = 0.0
    attempts: int = 0
    retry_count: int = 0
    max_retries: int = 1
    redrive_count: int = 0
    timeout: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    last_error: ClassifiedError | None = None
    history: list[Attempt] = field(default_factory=list)
    remote_job_id: str | None = None
    result: Any = None
    progress: Progress | None = None
    #: When the current (or last) attempt started.
    started_at: float | None = None
    finished_at: float | None = None
    cost: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    #: Set when the stored data could not be decoded; ``data`` then holds the raw text.
    data_error: str | None = None
    #: When retention deletes this completed or cancelled job (set as it finishes, from
    #: its task's ``keep_finished`` or the app's retention); None for other states.
    expires_at: float | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def history_records(self) -> list[dict[str, Any]]:
        """The stored history. A completed/cancelled job's last attempt leaves out the
        times it shares with the job (its start and end), which never change again (an
        unfinished job's ``started_at`` changes with its next fetch); see
        ``attempts_from_records``."""
        out = [a.to_record() for a in self.history]
        if out and self.state in EXPIRING_STATES:
            last = out[-1]
            if last["started_at"] == self.started_at:
                del last["started_at"]
            if last["finished_at"] == self.finished_at:
                del last["finished_at"]
        return out

    def to_record(self) -> dict[str, Any]:
        """The stored form: every field but those that hold their default (``from_record``
        restores them), so a finished no-op job stores a few hundred bytes, not a page."""
        full = self._fields()
        out = {k: v for k, v in full.items() if k not in _DEFAULTS or v != _DEFAULTS[k]}
        if out.get("run_at") == self.created_at:
            del out["run_at"]
        if out.get("updated_at") == self.created_at:
            del out["updated_at"]
        return out

    def _fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "data": self.data,
            "user_id": self.user_id,
            "idempotency_key": self.idempotency_key,
            "state": self.state.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "run_at": self.run_at,
            "attempts": self.attempts,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "redrive_count": self.redrive_count,
            "timeout": self.timeout,
            "lease_owner": self.lease_owner,
            "lease_expires_at": self.lease_expires_at,
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "history": self.history_records(),
            "remote_job_id": self.remote_job_id,
            "result": self.result,
            "progress": self.progress.to_record() if self.progress else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cost": self.cost,
            "meta": self.meta,
            "data_error": self.data_error,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> Job:
        last_error = raw.get("last_error")
        return cls(
            id=raw["id"],
            task=raw["task"],
            queue=raw.get("queue", "default"),
            data=raw.get("data"),
            user_id=raw.get("user_id"),
            idempotency_key=raw.get("idempotency_key"),
            state=_state(raw.get("state", "queued")),
            created_at=float(raw["created_at"]),
            updated_at=float(raw.get("updated_at") or raw["created_at"]),
            run_at=float(raw.get("run_at") or raw["created_at"]),
            attempts=int(raw.get("attempts") or 0),
            retry_count=int(raw.get("retry_count") or 0),
            max_retries=int(raw.get("max_retries", 1)),
            redrive_count=int(raw.get("redrive_count") or 0),
            timeout=raw.get("timeout"),
            lease_owner=raw.get("lease_owner"),
            lease_expires_at=raw.get("lease_expires_at"),
            last_error=ClassifiedError.from_dict(last_error) if last_error else None,
            history=attempts_from_records(
                raw.get("history") or [], raw.get("started_at"), raw.get("finished_at")
            ),
            remote_job_id=raw.get("remote_job_id"),
            result=raw.get("result"),
            progress=Progress.from_record(raw.get("progress")),
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            cost=dict(raw.get("cost") or {}),
            meta=dict(raw.get("meta") or {}),
            data_error=raw.get("data_error"),
            expires_at=raw.get("expires_at"),
        )

    def to_public(self) -> dict[str, Any]:
        """The stable JSON shape shown by the CLI (``--json``) and the HTTP API."""
        out = self._fields()
        for key in (
            "created_at",
            "updated_at",
            "run_at",
            "lease_expires_at",
            "started_at",
            "finished_at",
            "expires_at",
        ):
            out[key] = iso(out[key])
        out["history"] = [a.to_public() for a in self.history]
        if self.progress:
            out["progress"]["updated_at"] = iso(self.progress.updated_at)
        return out


def attempts_from_records(
    raw: list[Mapping[str, Any]], started_at: float | None, finished_at: float | None
) -> list[Attempt]:
    """The history ``Job.history_records`` stored, given the job's start and end times."""
    if raw and ("started_at" not in raw[-1] or "finished_at" not in raw[-1]):
        raw = [*raw[:-1], {"started_at": started_at, "finished_at": finished_at, **raw[-1]}]
    return [Attempt.from_record(a) for a in raw]


#: Fields ``to_record`` leaves out when they hold these values (``from_record``'s defaults).
#: ``data`` and ``result`` are left out only when None: ``{}`` and ``[]`` are values.
_DEFAULTS: Mapping[str, Any] = {
    "data": None,
    "user_id": None,
    "idempotency_key": None,
    "state": "queued",
    "queue": "default",
    "attempts": 0,
    "retry_count": 0,
    "max_retries": 1,
    "redrive_count": 0,
    "timeout": None,
    "lease_owner": None,
    "lease_expires_at": None,
    "last_error": None,
    "history": [],
    "remote_job_id": None,
    "result": None,
    "progress": None,
    "started_at": None,
    "finished_at": None,
    "cost": {},
    "meta": {},
    "data_error": None,
    "expires_at": None,
}


def wasted_cost(job: Job) -> dict[str, float]:
    """What was paid for attempts that did not produce the result: every cost of a dead or
    cancelled job, and the cost of the failed attempts of a completed one."""
    if job.state in (JobState.DEAD, JobState.CANCELLED):
        return dict(job.cost)
    if job.state is not JobState.COMPLETED or not job.history:
        return {}
    useful = job.history[-1].details.get("cost") or {}
    extra = {unit: total - float(useful.get(unit, 0.0)) for unit, total in job.cost.items()}
    return {unit: round(amount, 9) for unit, amount in extra.items() if amount > 1e-12}
