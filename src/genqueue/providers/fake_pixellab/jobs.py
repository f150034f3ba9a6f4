"""Background jobs of the fake PixelLab server.

Owns: the :class:`Job` record and its lifecycle (``processing`` until its N-th poll or its
deadline, then ``completed`` or a forced terminal word such as ``failed``; expiry after a
TTL), the job store (lookup by owner, in-flight counts) and the JSON a poll answers. Not
thread-safe by itself: :class:`~genqueue.providers.fake_pixellab.state.FakeState` calls it
under its lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from genqueue.providers.fake_pixellab.png import ImageEncoding, ImageSpec, render_all

PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """A forced terminal state: the status word and ``last_response.detail``."""

    status: str = FAILED
    detail: str = "Generation failed"


@dataclass
class Job:
    """One remote background job."""

    id: str
    owner: str  # token label
    operation: str
    spec: ImageSpec
    usage: dict[str, Any]
    created_at: str
    created_mono: float
    complete_after_polls: int
    client_job_id: str | None
    slot: str = ""  # concurrency slot: the id of the first job of the same submit
    polls: int = 0
    status: str = PROCESSING
    finished_mono: float | None = None
    forced: Outcome | None = None
    _result: dict[str, Any] | None = field(default=None, repr=False)
    _result_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def in_flight(self) -> bool:
        """True until the job completes or fails."""
        return self.finished_mono is None

    def settle(self, now: float, after_seconds: float | None) -> None:
        """Move to the terminal state if the poll count or the deadline says so."""
        if not self.in_flight:
            return
        by_polls = self.polls >= self.complete_after_polls
        by_time = after_seconds is not None and now - self.created_mono >= after_seconds
        if by_polls or by_time:
            self.status = self.forced.status if self.forced else COMPLETED
            self.finished_mono = now

    def expired(self, now: float, ttl: float | None) -> bool:
        """True once a finished job has outlived ``ttl`` seconds."""
        return (
            ttl is not None and self.finished_mono is not None and now - self.finished_mono >= ttl
        )

    def result(self, encoding: ImageEncoding, shape: str, max_images: int | None) -> dict[str, Any]:
        """``last_response`` of a completed job (rendered once, then cached)."""
        with self._result_lock:
            if self._result is None:
                spec = self.spec
                if max_images is not None and spec.count > max_images:
                    spec = ImageSpec(spec.description, spec.seed, spec.width, spec.height,
                                     spec.transparent, max_images)  # fmt: skip
                images = render_all(spec, encoding)
                single = shape == "image_when_single" and len(images) == 1
                self._result = {"image": images[0]} if single else {"images": images}
            return self._result


@dataclass(frozen=True)
class PollView:
    """What one poll saw: the job and the status word to report."""

    job: Job
    word: str
    terminal: bool


class JobNotFound(LookupError):
    """Unknown, expired, or another token's job (the real API answers 404 for all)."""


@dataclass
class JobStore:
    """All jobs of one fake, keyed by id."""

    jobs: dict[str, Job] = field(default_factory=dict)

    def add(self, job: Job) -> None:
        """Remember a new job."""
        self.jobs[job.id] = job

    def sweep(self, now: float, after_seconds: float | None, ttl: float | None) -> None:
        """Finish jobs whose deadline passed and forget expired ones."""
        for job_id, job in list(self.jobs.items()):
            job.settle(now, after_seconds)
            if job.expired(now, ttl):
                del self.jobs[job_id]

    def in_flight(self, owner: str) -> int:
        """How many of ``owner``'s submits still have a running job (concurrency slots)."""
        return len({j.slot for j in self.jobs.values() if j.owner == owner and j.in_flight})

    def in_flight_by_owner(self) -> dict[str, int]:
        """Busy concurrency slots per token label."""
        slots: dict[str, set[str]] = {}
        for job in self.jobs.values():
            if job.in_flight:
                slots.setdefault(job.owner, set()).add(job.slot)
        return {owner: len(busy) for owner, busy in slots.items()}

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """A job by id (and owner, when given); raises :class:`JobNotFound`."""
        job = self.jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(job_id)
        return job

    def poll(self, job: Job, now: float, after_seconds: float | None, busy_word: str) -> PollView:
        """Count one poll and report the status word it sees."""
        job.polls += 1
        job.settle(now, after_seconds)
        if not job.in_flight:
            return PollView(job, job.status, True)
        word = PROCESSING if job.polls <= 1 else busy_word
        return PollView(job, word, False)


def poll_payload(view: PollView, last_response: dict[str, Any] | None) -> dict[str, Any]:
    """The ``GET /background-jobs/{id}`` body."""
    job = view.job
    return {
        "id": job.id,
        "status": view.word,
        "created_at": job.created_at,
        "last_response": last_response,
        "usage": job.usage if view.terminal else None,
    }
