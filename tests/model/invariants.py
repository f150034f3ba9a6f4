"""The invariants of the model test: after every step, storage agrees with the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hypothesis.stateful import RuleBasedStateMachine, invariant

from genqueue import DLQFilter, Job, JobState, Page
from tests.model.harness import WORKER_ID, System
from tests.model.model import DELAYED, PENDING, MJob, Model

T = TypeVar("T")


class Invariants(RuleBasedStateMachine):
    sys: System
    model: Model
    #: The most dead jobs that shared an idempotency key at once (a hypothesis target).
    shared_keys: int

    def run(self, coro: Any) -> Any:
        return self.sys.run(coro)

    @property
    def now(self) -> float:
        return self.sys.now

    @invariant()
    def storage_agrees_with_the_model(self) -> None:
        assert not self.sys.errors.records, [r.getMessage() for r in self.sys.errors.records]
        stored = self._all_jobs()
        assert sorted(stored) == sorted(self.model.jobs), "jobs lost or invented"
        assert len(stored) == self.model.accepted - self.model.removed
        for job_id, expected in self.model.jobs.items():
            check_job(stored[job_id], expected, self.now)
        counts: dict[tuple[str, str], int] = {}
        for job in self.model.jobs.values():
            counts[job.queue, job.state.value] = counts.get((job.queue, job.state.value), 0) + 1
        actual = self.run(self.sys.app.backend.counts())
        flat = {(q, s): n for q, states in actual.items() for s, n in states.items() if n}
        assert flat == counts

    @invariant()
    def dlq_is_exactly_the_dead_jobs(self) -> None:
        pages = paginate(lambda c: self.sys.app.backend.dlq_list(DLQFilter(), c, 1000))
        entries = [e for page in self.run(pages) for e in page]
        dead = self.model.dead()
        keys = Counter((j.queue, j.key) for j in dead if j.key is not None)
        self.shared_keys = max(self.shared_keys, sum(n for n in keys.values() if n > 1))
        assert [e.job_id for e in entries] == [j.id for j in dead], "DLQ != dead jobs, newest first"
        assert self.run(self.sys.app.backend.dlq_count(DLQFilter())) == len(dead)
        for entry, job in zip(entries, dead, strict=True):
            assert job.entry is not None
            assert entry.job.state is JobState.DEAD
            assert entry.error_kind is job.entry.kind
            assert entry.failed_at == job.entry.failed_at
            assert entry.expires_at == job.entry.expires_at
            assert entry.reason == job.entry.reason
            assert entry.redrive_count == job.redrive_count
            assert entry.job.cost.get("usd", 0.0) == job.cost
        assert self.sys.count("queue_dlq_move") == self.model.dlq_moves
        assert self.sys.count("dlq_retry") == self.model.redrives

    def _all_jobs(self) -> dict[str, Job]:
        pages = self.run(paginate(lambda c: self.sys.app.queue.list(cursor=c, limit=1000)))
        return {j.id: j for page in pages for j in page}


async def paginate(read: Callable[[str | None], Awaitable[Page[T]]]) -> list[list[T]]:
    """Every page of a cursor-paginated listing."""
    pages: list[list[T]] = []
    cursor = None
    while True:
        page = await read(cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def check_job(job: Job, expected: MJob, now: float) -> None:
    """The stored job matches the model (adopting a lazy promotion of a due job)."""
    if job.state is not expected.state:
        promoted = expected.state in DELAYED and expected.run_at <= now
        assert promoted and job.state is JobState.QUEUED, (job.id, job.state, expected.state)
        expected.state = JobState.QUEUED
    where = f"job {job.id} ({expected.state.value})"
    assert job.queue == expected.queue and job.idempotency_key == expected.key, where
    assert job.task == expected.task and job.user_id == expected.user, where
    assert (job.attempts, job.retry_count, job.redrive_count, job.max_retries) == (
        expected.attempts,
        expected.retry_count,
        expected.redrive_count,
        expected.max_retries,
    ), where
    assert [(a.number, a.outcome) for a in job.history] == expected.history, where
    numbers = [n for n, _ in expected.history]
    assert numbers == sorted(set(numbers)) and all(n <= job.attempts for n in numbers), where
    assert job.remote_job_id == expected.remote_job_id, where
    assert job.cost.get("usd", 0.0) == expected.cost, where
    if expected.state in PENDING:
        assert job.run_at == expected.run_at, where
    assert job.started_at == expected.started_at, where  # of the last attempt
    if expected.state is JobState.ACTIVE:
        assert job.lease_owner == WORKER_ID, where
        assert job.lease_expires_at == expected.lease_expires_at, where
    else:
        assert job.lease_owner is None and job.lease_expires_at is None, where
    if expected.state in (JobState.COMPLETED, JobState.CANCELLED, JobState.DEAD):
        assert job.finished_at == expected.finished_at, where
    if expected.state in (JobState.RETRYING, JobState.DEAD) and expected.history:
        assert job.last_error is not None and job.last_error.kind is expected.last_kind, where
