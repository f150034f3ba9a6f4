"""The in-memory backend: the reference semantics of the storage contract.

Everything lives in this process and is lost with it. Use it in unit tests of code that
enqueues jobs (``genqueue.testing``) and as the model the other backends are checked
against. Jobs are stored encoded, as the other backends store them, so a caller that
mutates a ``Job`` after enqueueing it cannot change what is stored, and data that is not
JSON fails here as it would anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from genqueue import serialization
from genqueue.backends.base import (
    Backend,
    Capabilities,
    JobQuery,
    Lease,
    Move,
    RunningUpdate,
    check_same_data,
    gone_at_finish,
)
from genqueue.clock import SYSTEM_CLOCK, Clock
from genqueue.entry import DeadLetter, DLQFilter, Page, decode_cursor, encode_cursor
from genqueue.job import DELAYED_STATES, EXPIRING_STATES, TERMINAL_STATES, Job, JobState


class _SharedStateMixin:
    """Shared state of the memory backend (see ``Backend.state_get``)."""

    clock: Clock
    _state: dict[str, tuple[bytes, int, float | None]]
    _slots: dict[str, dict[str, float]]
    _tallies: dict[int, dict[str, float]]

    def _live_state(self, key: str) -> tuple[bytes, int, float | None] | None:
        found = self._state.get(key)
        if found is not None and found[2] is not None and found[2] <= self.clock.now():
            return None
        return found

    async def state_get(self, key: str) -> tuple[Any, int] | None:
        found = self._live_state(key)
        return None if found is None else (serialization.loads(found[0]), found[1])

    async def state_put(
        self, key: str, value: Any, *, expect_version: int, ttl: float | None = None
    ) -> int | None:
        found = self._live_state(key)
        if (found[1] if found else 0) != expect_version:
            return None
        version = (self._state[key][1] if key in self._state else 0) + 1
        expires = None if ttl is None else self.clock.now() + ttl
        self._state[key] = (serialization.dumps(value), version, expires)
        return version

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        now = self.clock.now()
        slots = self._slots[key]
        for other, expires in list(slots.items()):
            if expires <= now:
                del slots[other]
        if holder not in slots and len(slots) >= limit:
            return False
        slots[holder] = now + ttl
        return True

    async def slot_release(self, key: str, holder: str) -> None:
        self._slots[key].pop(holder, None)

    async def slot_count(self, key: str) -> int:
        now = self.clock.now()
        return sum(1 for expires in self._slots[key].values() if expires > now)

    async def slot_holders(self, key: str) -> list[str]:
        now = self.clock.now()
        return [holder for holder, expires in self._slots[key].items() if expires > now]

    async def tally_add(self, bucket: int, counts: Mapping[str, float], keep: float) -> None:
        into = self._tallies.setdefault(bucket, {})
        for name, n in counts.items():
            into[name] = into.get(name, 0.0) + n
        oldest = bucket - int(keep // 60) - 1
        for old in [b for b in self._tallies if b < oldest]:
            del self._tallies[old]

    async def tally_read(self, first: int, last: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for bucket, counts in self._tallies.items():
            if first <= bucket <= last:
                for name, n in counts.items():
                    out[name] = out.get(name, 0.0) + n
        return out

    async def tally_buckets(self, first: int, last: int) -> dict[int, dict[str, float]]:
        return {b: dict(c) for b, c in self._tallies.items() if first <= b <= last and c}


class MemoryBackend(_SharedStateMixin, Backend):
    capabilities = Capabilities(shared=False, server_time=False)

    def __init__(self, clock: Clock | None = None, url: str = "memory://") -> None:
        self.url = url
        self.clock = clock or SYSTEM_CLOCK
        self._jobs: dict[str, bytes] = {}
        self._dlq: dict[str, dict[str, Any]] = {}
        self._idem: dict[tuple[str, str], str] = {}  # (queue, key) -> job id
        self._seq = itertools.count()
        # Heaps of (run_at, seq, id); entries are checked against the stored job on pop.
        self._ready: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
        self._delayed: list[tuple[float, int, str]] = []
        self._state: dict[str, tuple[bytes, int, float | None]] = {}  # value, version, expiry
        self._slots: dict[str, dict[str, float]] = defaultdict(dict)  # key -> holder -> expiry
        self._tallies: dict[int, dict[str, float]] = {}  # minute -> name -> count
        self._work = asyncio.Event()  # set whenever a job became queued

    async def time(self) -> float:
        return self.clock.now()

    # -- storage helpers ----------------------------------------------------------------

    def _load(self, job_id: str) -> Job | None:
        raw = self._jobs.get(job_id)
        return Job.from_record(serialization.loads(raw)) if raw is not None else None

    def _store(self, job: Job) -> None:
        self._jobs[job.id] = serialization.dumps(job.to_record())
        if job.state is JobState.QUEUED:
            heapq.heappush(self._ready[job.queue], (job.run_at, next(self._seq), job.id))
            self._work.set()
        elif job.state in DELAYED_STATES:
            heapq.heappush(self._delayed, (job.run_at, next(self._seq), job.id))
        key = (job.queue, job.idempotency_key) if job.idempotency_key else None
        if key is not None:
            if job.state in TERMINAL_STATES:
                if self._idem.get(key) == job.id:
                    del self._idem[key]
            else:
                self._idem[key] = job.id

    def _delete(self, job_id: str) -> None:
        job = self._load(job_id)
        self._jobs.pop(job_id, None)
        self._dlq.pop(job_id, None)
        key = (job.queue, job.idempotency_key) if job and job.idempotency_key else None
        if key is not None and self._idem.get(key) == job_id:
            del self._idem[key]

    # -- producers ----------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        for job in jobs:
            serialization.dumps(job.to_record())  # all encode, or nothing is stored
        holders = self._holders(jobs)  # raises on a conflict, before anything is stored
        out: list[Job] = []
        batch_keys: dict[tuple[str, str], Job] = {}
        for job, holder in zip(jobs, holders, strict=True):
            key = (job.queue, job.idempotency_key) if job.idempotency_key else None
            if holder is not None:
                out.append(holder)
                continue
            if key and key in batch_keys:
                out.append(batch_keys[key])
                continue
            if job.id in self._jobs:
                from genqueue.errors import InvalidInput

                raise InvalidInput(f"a job with id {job.id} already exists", field="id")
            self._store(job)
            stored = self._load(job.id)
            assert stored is not None
            if key:
                batch_keys[key] = stored
            out.append(stored)
        return out

    def _holders(self, jobs: Sequence[Job]) -> list[Job | None]:
        """Per job, the stored job holding its idempotency key (same data), or None."""
        out: list[Job | None] = []
        first: dict[tuple[str, str], Job] = {}  # the batch's own holders
        for job in jobs:
            key = (job.queue, job.idempotency_key) if job.idempotency_key else None
            holder_id = self._idem.get(key) if key else None
            holder = self._load(holder_id) if holder_id else None
            if key is not None:
                check_same_data(job, holder or first.setdefault(key, job))
            out.append(holder)
        return out

    async def get(self, job_id: str) -> Job | None:
        return self._load(job_id)

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        after = decode_cursor(query.cursor)
        jobs = [j for j in (self._load(i) for i in self._jobs) if j is not None]
        jobs = [j for j in jobs if _job_matches(j, query)]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        if after is not None:
            jobs = [j for j in jobs if (j.created_at, j.id) < after]
        page = jobs[: query.limit]
        more = len(jobs) > query.limit
        cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return Page(page, cursor)

    async def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for job_id in self._jobs:
            job = self._load(job_id)
            assert job is not None
            out[job.queue][job.state.value] += 1
        return {q: dict(states) for q, states in out.items()}

    async def oldest_ready(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for raw in self._jobs.values():
            job = Job.from_record(serialization.loads(raw))
            if job.state is JobState.QUEUED:
                out[job.queue] = min(out.get(job.queue, job.run_at), job.run_at)
        return out

    # -- workers ------------------------------------------------------------------------

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        if not self._work.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def fetch(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_seconds: float
    ) -> list[Job]:
        now = self.clock.now()
        await self.promote(10_000)
        claimed: list[Job] = []
        while len(claimed) < limit:
            job = self._pop_ready(queues, now)
            if job is None:
                break
            job.state = JobState.ACTIVE
            job.attempts += 1
            job.lease_owner = worker_id
            job.lease_expires_at = now + lease_seconds
            job.started_at = now
            job.updated_at = now
            self._store(job)
            claimed.append(job)
        return claimed

    def _pop_ready(self, queues: Sequence[str], now: float) -> Job | None:
        best: tuple[float, int, str] | None = None
        best_queue = ""
        for queue in queues:
            heap = self._ready.get(queue)
            while heap:
                run_at, _, job_id = heap[0]
                job = self._load(job_id)
                if job is None or job.state is not JobState.QUEUED or job.run_at != run_at:
                    heapq.heappop(heap)  # stale index entry
                    continue
                if run_at <= now and (best is None or heap[0] < best):
                    best, best_queue = heap[0], queue
                break
        if best is None:
            return None
        heapq.heappop(self._ready[best_queue])
        return self._load(best[2])

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[str]:
        now = self.clock.now()
        lost: list[str] = []
        for lease in leases:
            job = self._live(lease, now)
            if job is None:
                lost.append(lease.job_id)
                continue
            job.lease_expires_at = now + lease_seconds
            self._jobs[job.id] = serialization.dumps(job.to_record())
        return lost

    def _live(self, lease: Lease, now: float) -> Job | None:
        job = self._load(lease.job_id)
        if (
            job is None
            or job.state is not JobState.ACTIVE
            or job.attempts != lease.token
            or (job.lease_expires_at or 0) <= now
        ):
            return None
        return job

    async def update_running(self, lease: Lease, update: RunningUpdate) -> bool:
        job = self._live(lease, self.clock.now())
        if job is None:
            return False
        apply_running_update(job, update, self.clock.now())
        self._jobs[job.id] = serialization.dumps(job.to_record())
        return True

    async def move(self, moves: Sequence[Move]) -> list[bool]:
        now = self.clock.now()
        results: list[bool] = []
        for move in moves:
            current = self._load(move.job.id)
            ok = (
                current is not None
                and current.state is move.expect_state
                and current.attempts == move.expect_token
                and not (move.require_expired_lease and (current.lease_expires_at or 0) > now)
            )
            if ok and move.job.state is JobState.QUEUED and move.job.idempotency_key:
                holder = self._idem.get((move.job.queue, move.job.idempotency_key))
                ok = holder is None or holder == move.job.id
            if ok:
                self._apply_move(move)
            results.append(ok)
        return results

    def _apply_move(self, move: Move) -> None:
        if move.job.state is JobState.DEAD:
            assert move.entry is not None, "a move to DEAD needs its entry"
            self._dlq[move.job.id] = move.entry.index_record()
        else:
            self._dlq.pop(move.job.id, None)
        if gone_at_finish(move.job):
            self._delete(move.job.id)
            return
        self._store(move.job)

    async def expired(self, limit: int) -> list[Job]:
        now = self.clock.now()
        out = []
        for job_id in list(self._jobs):
            job = self._load(job_id)
            if job and job.state is JobState.ACTIVE and (job.lease_expires_at or 0) <= now:
                out.append(job)
        out.sort(key=lambda j: j.lease_expires_at or 0)
        return out[:limit]

    async def promote(self, limit: int) -> int:
        now = self.clock.now()
        moved = 0
        while self._delayed and self._delayed[0][0] <= now and moved < limit:
            run_at, _, job_id = heapq.heappop(self._delayed)
            job = self._load(job_id)
            if job is None or job.state not in DELAYED_STATES or job.run_at != run_at:
                continue
            job.state = JobState.QUEUED
            job.updated_at = now
            self._store(job)
            moved += 1
        return moved

    async def purge_finished(
        self, now: float, finished_before: float, limit: int, keep: int | None = None
    ) -> int:
        by_queue: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for job_id in list(self._jobs):
            job = self._load(job_id)
            if job and job.state in EXPIRING_STATES:
                by_queue[job.queue].append((_expiry(job, now, finished_before), job.id))
        doomed: list[str] = []
        for jobs in by_queue.values():
            jobs.sort()
            old = sum(1 for expiry, _ in jobs if expiry <= now)
            over = len(jobs) - keep if keep is not None else 0
            doomed += [job_id for _, job_id in jobs[: max(old, over)]]
        for job_id in doomed[:limit]:
            self._delete(job_id)
        return len(doomed[:limit])

    # -- dead letter queue ----------------------------------------------------------------

    def _entry(self, job_id: str) -> DeadLetter | None:
        index = self._dlq.get(job_id)
        job = self._load(job_id)
        if index is None or job is None:
            return None
        return DeadLetter.from_records(index, job)

    async def dlq_get(self, job_id: str) -> DeadLetter | None:
        return self._entry(job_id)

    def _matching(self, filter: DLQFilter) -> list[tuple[float, str]]:
        """(failed_at, job_id) of matching entries, newest first."""
        keys = [
            (index["failed_at"], job_id)
            for job_id, index in self._dlq.items()
            if filter.matches_record(index)
        ]
        keys.sort(reverse=True)
        return keys

    async def dlq_list(self, filter: DLQFilter, cursor: str | None, limit: int) -> Page[DeadLetter]:
        after = decode_cursor(cursor)
        keys = self._matching(filter)
        if after is not None:
            keys = [k for k in keys if k < after]
        page = [e for e in (self._entry(job_id) for _, job_id in keys[:limit]) if e is not None]
        more = len(keys) > limit
        next_cursor = encode_cursor(page[-1].failed_at, page[-1].job_id) if more and page else None
        return Page(page, next_cursor)

    async def dlq_count(self, filter: DLQFilter) -> int:
        return len(self._matching(filter))

    async def dlq_delete(self, job_ids: Sequence[str]) -> list[str]:
        deleted = [job_id for job_id in job_ids if job_id in self._dlq]
        for job_id in deleted:
            self._delete(job_id)
        return deleted

    async def dlq_expire(self, limit: int) -> list[str]:
        now = self.clock.now()
        doomed = sorted(
            (index["expires_at"], job_id)
            for job_id, index in self._dlq.items()
            if index["expires_at"] <= now
        )[:limit]
        for _, job_id in doomed:
            self._delete(job_id)
        return [job_id for _, job_id in doomed]


def _expiry(job: Job, now: float, finished_before: float) -> float:
    """When the finished job expires; one stored without ``expires_at`` expires ``now -
    finished_before`` after it finished (the age rule of its time)."""
    if job.expires_at is not None:
        return job.expires_at
    return (job.finished_at or 0.0) + (now - finished_before)


def _job_matches(job: Job, query: JobQuery) -> bool:
    return (
        (query.queue is None or job.queue == query.queue)
        and (query.states is None or job.state in query.states)
        and (query.task is None or job.task == query.task)
        and (query.user_id is None or job.user_id == query.user_id)
        and (query.since is None or job.created_at >= query.since)
        and (query.until is None or job.created_at < query.until)
    )


def apply_running_update(job: Job, update: RunningUpdate, now: float) -> None:
    """Apply a running job's update to a job object (shared by backends that decode jobs)."""
    if update.progress is not None:
        job.progress = update.progress
    if update.remote_job_id is not None:
        job.remote_job_id = update.remote_job_id
    if update.meta:
        job.meta.update(update.meta)
    if update.cost:
        job.cost = dict(update.cost)
    job.updated_at = now
