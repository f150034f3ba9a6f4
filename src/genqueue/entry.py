"""The dead letter entry, the filters that select entries, and pages of results.

An entry is the record of *why* a job is dead (reason, error kind, fingerprint, when,
until when it is kept) next to the dead job itself, which carries the data, the full
attempt history, the remote job id and the cost. The job is stored once; the entry adds
the indexed fields. Operations on the DLQ live in ``genqueue.deadletter``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from genqueue.choices import parse_choice
from genqueue.classify import ErrorKind
from genqueue.errors import InvalidInput
from genqueue.job import Attempt, Job
from genqueue.serialization import iso

T = TypeVar("T")


@dataclass(slots=True)
class DeadLetter:
    job: Job
    reason: str
    error_kind: ErrorKind
    failed_at: float
    fingerprint: str
    expires_at: float

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def user_id(self) -> str | None:
        return self.job.user_id

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def task(self) -> str:
        return self.job.task

    @property
    def remote_job_id(self) -> str | None:
        return self.job.remote_job_id

    @property
    def redrive_count(self) -> int:
        return self.job.redrive_count

    @property
    def retry_attempts(self) -> int:
        return self.job.retry_count

    @property
    def history(self) -> list[Attempt]:
        return self.job.history

    def index_record(self) -> dict[str, Any]:
        """The entry's own fields, as backends index them."""
        return {
            "job_id": self.job.id,
            "queue": self.job.queue,
            "user_id": self.job.user_id,
            "task": self.job.task,
            "reason": self.reason,
            "error_kind": self.error_kind.value,
            "failed_at": self.failed_at,
            "fingerprint": self.fingerprint,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_records(cls, index: Mapping[str, Any], job: Job) -> DeadLetter:
        try:
            kind = ErrorKind(str(index.get("error_kind")))
        except ValueError:
            kind = ErrorKind.UNKNOWN
        return cls(
            job=job,
            reason=str(index.get("reason", "")),
            error_kind=kind,
            failed_at=float(index["failed_at"]),
            fingerprint=str(index.get("fingerprint", "")),
            expires_at=float(index["expires_at"]),
        )

    def to_public(self) -> dict[str, Any]:
        """The stable JSON shape of an entry (CLI ``--json``, HTTP API, exports)."""
        error = self.job.last_error
        return {
            "job_id": self.job.id,
            "user_id": self.job.user_id,
            "queue": self.job.queue,
            "task": self.job.task,
            "original_job": {"id": self.job.id, "task": self.job.task, "data": self.job.data},
            "failure_reason": self.reason,
            "error_kind": self.error_kind.value,
            "failed_at": iso(self.failed_at),
            "retry_attempts": self.job.retry_count,
            "attempts": self.job.attempts,
            "last_error": (
                {"message": error.message, "type": error.type, "stack": error.stack}
                if error
                else None
            ),
            "remote_job_id": self.job.remote_job_id,
            "history": [a.to_public() for a in self.job.history],
            "fingerprint": self.fingerprint,
            "redrive_count": self.job.redrive_count,
            "expires_at": iso(self.expires_at),
            "cost": self.job.cost,
            "data_error": self.job.data_error,
        }


@dataclass(frozen=True, init=False)
class DLQFilter:
    """Selects dead letter entries. Every field that is set must match.

    ``error_kind`` takes an ``ErrorKind`` or its value (``"auth"``); an unknown kind is
    ``InvalidInput`` (a ``ValueError``) listing the valid ones.
    """

    queue: str | None
    user_id: str | None
    error_kind: ErrorKind | None
    task: str | None
    fingerprint: str | None
    since: float | None  # failed_at >= since
    until: float | None  # failed_at < until

    def __init__(
        self,
        *,
        queue: str | None = None,
        user_id: str | None = None,
        error_kind: ErrorKind | str | None = None,
        task: str | None = None,
        fingerprint: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        kind = (
            None
            if error_kind is None
            else parse_choice(ErrorKind, error_kind, "error_kind", "kinds")
        )
        # A frozen dataclass: fields are set once, here, through object.__setattr__.
        for name, value in (
            ("queue", queue),
            ("user_id", user_id),
            ("error_kind", kind),
            ("task", task),
            ("fingerprint", fingerprint),
            ("since", since),
            ("until", until),
        ):
            object.__setattr__(self, name, value)

    def matches(self, entry: DeadLetter) -> bool:
        return self.matches_record(entry.index_record())

    def matches_record(self, record: Mapping[str, Any]) -> bool:
        """Match against an entry's ``index_record()`` (no need to load the job)."""
        kind = self.error_kind.value if self.error_kind is not None else None
        checks = (
            (self.queue, record["queue"]),
            (self.user_id, record["user_id"]),
            (kind, record["error_kind"]),
            (self.task, record["task"]),
            (self.fingerprint, record["fingerprint"]),
        )
        if any(want is not None and want != have for want, have in checks):
            return False
        failed_at = record["failed_at"]
        if self.since is not None and failed_at < self.since:
            return False
        return not (self.until is not None and failed_at >= self.until)

    @property
    def is_empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.queue,
                self.user_id,
                self.error_kind,
                self.task,
                self.fingerprint,
                self.since,
                self.until,
            )
        )


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(score: float, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """Decode a cursor made by ``encode_cursor``; a malformed one is bad input."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        score, ident = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return float(score), ident
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid cursor {cursor!r}", field="cursor") from exc


@dataclass(slots=True)
class SearchPage:
    """Entries whose failure text contains the searched text, newest first.

    ``scanned`` entries matching the filter were read to find them: up to the last one
    returned when the page is full, else all that were read (at most the ``scan`` the
    search was given). ``next_cursor`` continues after the last entry returned, or after
    the last one read when the page is not full and more entries match the filter.
    """

    items: list[DeadLetter]
    next_cursor: str | None
    scanned: int


def failure_text_matches(entry: DeadLetter, text: str) -> bool:
    """Whether the entry's failure reason or last error message contains ``text``,
    ignoring case."""
    error = entry.job.last_error
    haystack = f"{entry.reason}\n{error.message if error else ''}".lower()
    return text.lower() in haystack


@dataclass(slots=True)
class FingerprintGroup:
    fingerprint: str
    count: int
    error_kind: str
    error_type: str
    sample_message: str
    tasks: list[str] = field(default_factory=list)

    @classmethod
    def from_sample(
        cls, fingerprint: str, count: int, tasks: list[str], sample: DeadLetter | None
    ) -> FingerprintGroup:
        """The group described by one of its entries (the newest, as backends pick it)."""
        error = sample.job.last_error if sample else None
        return cls(
            fingerprint=fingerprint,
            count=count,
            error_kind=sample.error_kind.value if sample else "",
            error_type=error.type if error else "",
            sample_message=error.message if error else (sample.reason if sample else ""),
            tasks=tasks,
        )


@dataclass(slots=True)
class DLQStats:
    total: int
    by_kind: dict[str, int]
    by_task: dict[str, int]
    by_user: dict[str, int]
    by_day: dict[str, int]
    top_fingerprints: list[FingerprintGroup]
    cost_lost: dict[str, float]

    def to_public(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_error_kind": self.by_kind,
            "by_task": self.by_task,
            "by_user": self.by_user,
            "by_day": self.by_day,
            "top_fingerprints": [
                {
                    "fingerprint": g.fingerprint,
                    "count": g.count,
                    "error_kind": g.error_kind,
                    "error_type": g.error_type,
                    "sample_message": g.sample_message,
                    "tasks": g.tasks,
                }
                for g in self.top_fingerprints
            ],
            "cost_lost": self.cost_lost,
        }
