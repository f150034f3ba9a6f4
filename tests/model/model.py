"""The reference model: what genqueue's README and contracts say should happen, in plain Python.

It knows nothing of genqueue's code beyond the names of states and error kinds. Policies
are written out again here from the documentation (retryable kinds, backoff, redrive limit,
retention), so a mistake in the library's policy code shows up as a disagreement.

Where the contract leaves a choice to the backend (which of several equally due jobs a
fetch claims first), the model checks that the choice is allowed and then adopts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genqueue import AttemptOutcome, ErrorKind, JobState

# The policy under test (see harness.py, which configures the app the same way).
RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.NETWORK,
        ErrorKind.WORKER_LOST,
    }
)
BASE_DELAY = 5.0
MULTIPLIER = 2.0
MAX_DELAY = 60.0
LEASE = 30.0
FINISHED_KEEP = 600.0
DLQ_KEEP = 900.0
MAX_REDRIVES = 2

PENDING = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING})
DELAYED = frozenset({JobState.SCHEDULED, JobState.RETRYING})
TERMINAL = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})


@dataclass
class Entry:
    kind: ErrorKind
    failed_at: float
    expires_at: float
    reason: str


@dataclass
class MJob:
    id: str
    queue: str
    key: str | None
    max_retries: int
    state: JobState
    run_at: float
    created_at: float
    task: str = ""
    user: str | None = None
    attempts: int = 0
    retry_count: int = 0
    redrive_count: int = 0
    lease_expires_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    remote_job_id: str | None = None
    cost: float = 0.0
    last_kind: ErrorKind | None = None
    #: (attempt number, outcome) of each history entry.
    history: list[tuple[int, AttemptOutcome]] = field(default_factory=list)
    entry: Entry | None = None

    def due(self, now: float) -> bool:
        return self.state is JobState.QUEUED or (self.state in DELAYED and self.run_at <= now)


def policy_delay(retry_count: int) -> float:
    """Backoff before the retry that follows ``retry_count`` retries (jitter is pinned at 0)."""
    return min(BASE_DELAY * MULTIPLIER**retry_count, MAX_DELAY)


class Model:
    def __init__(self) -> None:
        self.jobs: dict[str, MJob] = {}
        #: Ids of jobs that existed and were removed (DLQ delete/purge/retention).
        self.gone: list[str] = []
        self.accepted = 0
        self.removed = 0
        self.dlq_moves = 0
        self.redrives = 0

    # -- producers ------------------------------------------------------------------------

    def holder(self, queue: str, key: str | None) -> str | None:
        """The job holding an idempotency key: a job of the queue that is not terminal."""
        if key is None:
            return None
        for job in self.jobs.values():
            if job.queue == queue and job.key == key and job.state not in TERMINAL:
                return job.id
        return None

    def enqueue(
        self,
        returned_id: str,
        queue: str,
        key: str | None,
        delay: float,
        retries: int,
        now: float,
        *,
        task: str,
        user: str | None = None,
    ) -> None:
        holder = self.holder(queue, key)
        if holder is not None:
            assert returned_id == holder, f"key {key!r} is held by {holder}, got {returned_id}"
            return
        assert returned_id not in self.jobs and returned_id not in self.gone, "id reused"
        state = JobState.SCHEDULED if delay > 0 else JobState.QUEUED
        job = MJob(returned_id, queue, key, retries, state, now + delay, now, task, user)
        self.jobs[returned_id] = job
        self.accepted += 1

    # -- workers --------------------------------------------------------------------------

    def fetch(
        self, claimed: list[str], queues: list[str], limit: int, now: float, *, oldest_first: bool
    ) -> None:
        """Check that a fetch claimed an allowed set of jobs, then record the claim."""
        due = {j.id: j for j in self.jobs.values() if j.queue in queues and j.due(now)}
        assert len(set(claimed)) == len(claimed), f"claimed twice: {claimed}"
        assert set(claimed) <= set(due), f"claimed jobs that were not due: {claimed}"
        assert len(claimed) == min(limit, len(due)), f"claimed {len(claimed)} of {len(due)} due"
        for queue in queues:
            # Oldest due first, within each queue.
            mine = [due[i].run_at for i in claimed if due[i].queue == queue]
            left = [j.run_at for i, j in due.items() if i not in claimed and j.queue == queue]
            if mine and left:
                assert max(mine) <= min(left), f"{queue}: claimed {mine}, left older {left}"
        if claimed and oldest_first:
            # Across queues only the oldest due job is promised (Redis fills a batch from
            # the queue with the oldest head first, then the next).
            oldest = min(j.run_at for j in due.values())
            assert min(due[i].run_at for i in claimed) == oldest, "the oldest due job was left"
        for job_id in claimed:
            job = self.jobs[job_id]
            job.state = JobState.ACTIVE
            job.attempts += 1
            job.lease_expires_at = now + LEASE
            job.started_at = now

    def live(self, job_id: str, token: int, now: float) -> MJob | None:
        """The job if ``token`` holds its lease now."""
        job = self.jobs.get(job_id)
        if (
            job is None
            or job.state is not JobState.ACTIVE
            or job.attempts != token
            or (job.lease_expires_at or 0) <= now
        ):
            return None
        return job

    def heartbeat(self, job_id: str, token: int, now: float) -> bool:
        job = self.live(job_id, token, now)
        if job is not None:
            job.lease_expires_at = now + LEASE
        return job is not None

    def owned(self, job_id: str, token: int) -> MJob | None:
        """The job if it is still the attempt ``token`` (an outcome may be stored)."""
        job = self.jobs.get(job_id)
        if job is None or job.state is not JobState.ACTIVE or job.attempts != token:
            return None
        return job

    def _end(self, job: MJob, state: JobState, outcome: AttemptOutcome) -> None:
        job.history.append((job.attempts, outcome))
        job.state = state
        job.lease_expires_at = None

    def complete(self, job: MJob, now: float) -> None:
        self._end(job, JobState.COMPLETED, AttemptOutcome.COMPLETED)
        job.finished_at = now

    def cancel_by_task(self, job: MJob, now: float) -> None:
        self._end(job, JobState.CANCELLED, AttemptOutcome.CANCELLED)
        job.finished_at = now

    def release(self, job: MJob, now: float) -> None:
        """Given back by a worker shutting down: queued again, no retry spent."""
        self._end(job, JobState.QUEUED, AttemptOutcome.INTERRUPTED)
        job.run_at = now

    def snooze(self, job: MJob, delay: float, now: float) -> None:
        last = job.history[-1] if job.history else None
        number = job.attempts
        if last is not None and last[1] is AttemptOutcome.SNOOZED:
            # Snoozes in a row (same reason) share one history entry, which keeps its number.
            job.history.pop()
            number = last[0]
        job.history.append((number, AttemptOutcome.SNOOZED))
        job.state = JobState.SCHEDULED
        job.lease_expires_at = None
        job.run_at = now + delay

    def fail(
        self,
        job: MJob,
        kind: ErrorKind,
        now: float,
        *,
        retry_after: float | None = None,
        signal: bool = False,
        signal_delay: float | None = None,
    ) -> None:
        """A failed attempt (or a Retry signal): retry per the policy, or dead-letter."""
        job.last_kind = kind
        n = job.retry_count
        if not (signal or kind in RETRYABLE):
            return self._dead(job, kind, f"{kind.value} errors are not retried", now)
        if n >= job.max_retries:
            return self._dead(job, kind, f"retries exhausted ({n} of {job.max_retries} used)", now)
        delay = policy_delay(n)
        if signal and signal_delay is not None:
            delay = signal_delay
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_DELAY))
        self._end(job, JobState.RETRYING, AttemptOutcome.FAILED)
        job.retry_count = n + 1
        job.run_at = now + delay
        return None

    def _dead(self, job: MJob, kind: ErrorKind, reason: str, now: float) -> None:
        self._end(job, JobState.DEAD, AttemptOutcome.DEAD)
        job.finished_at = now
        job.entry = Entry(kind, now, now + DLQ_KEEP, reason)
        self.dlq_moves += 1

    def reclaim(self, now: float) -> None:
        """Every job whose lease has expired fails as ``worker_lost``."""
        for job in list(self.jobs.values()):
            if job.state is JobState.ACTIVE and (job.lease_expires_at or 0) <= now:
                self.fail(job, ErrorKind.WORKER_LOST, now)

    def promote(self, now: float) -> None:
        for job in self.jobs.values():
            if job.state in DELAYED and job.run_at <= now:
                job.state = JobState.QUEUED

    def cancel(self, job_id: str, now: float) -> bool:
        job = self.jobs[job_id]
        if job.state not in PENDING | {JobState.ACTIVE}:
            return False
        job.state = JobState.CANCELLED
        job.finished_at = now
        job.lease_expires_at = None
        return True

    # -- dead letter queue ----------------------------------------------------------------

    def dead(self) -> list[MJob]:
        """Dead jobs, newest first (failed_at, then id), as the DLQ lists them."""
        jobs = [j for j in self.jobs.values() if j.state is JobState.DEAD]
        return sorted(jobs, key=lambda j: (j.entry.failed_at if j.entry else 0, j.id), reverse=True)

    def redrive(self, job_ids: list[str], now: float) -> tuple[list[str], dict[str, str]]:
        """Redrive in order; return (redriven ids, refused id -> reason start)."""
        done: list[str] = []
        refused: dict[str, str] = {}
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is None or job.state is not JobState.DEAD:
                refused[job_id] = "not found"
            elif job.redrive_count >= MAX_REDRIVES:
                refused[job_id] = "redriven"
            elif self.holder(job.queue, job.key) is not None:
                refused[job_id] = "another pending job holds"
            else:
                job.state = JobState.QUEUED
                job.retry_count = 0
                job.redrive_count += 1
                job.run_at = now
                job.finished_at = None
                job.entry = None
                done.append(job_id)
                self.redrives += 1
        return done, refused

    def remove(self, job_id: str) -> None:
        del self.jobs[job_id]
        self.gone.append(job_id)
        self.removed += 1

    def sweep(self, now: float) -> None:
        """Retention: expired entries and old completed/cancelled jobs are deleted."""
        for job in list(self.jobs.values()):
            if (job.entry is not None and job.entry.expires_at <= now) or (
                job.state in (JobState.COMPLETED, JobState.CANCELLED)
                and job.finished_at is not None
                and job.finished_at < now - FINISHED_KEEP
            ):
                self.remove(job.id)
