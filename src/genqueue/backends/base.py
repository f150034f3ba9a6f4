"""The storage contract every backend implements.

A backend stores jobs and dead letter entries and moves them atomically. It never
decides: retry or dead-letter, delays, redrive limits and retention ages are computed
above it and handed down. The one write primitive for a job that exists is ``move``: a
compare-and-set on (state, attempts) that replaces the stored job with the one the core
computed, and adds or removes its dead letter entry in the same transaction (a job that
expires as it finishes, ``gone_at_finish``, is deleted by that move instead). Because
``attempts`` grows by one on every fetch it doubles as the lease's fencing token, so a
worker that lost its lease can neither complete, fail nor overwrite the job.

The conformance suite (``tests/conformance``) is the specification of this module.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genqueue import serialization
from genqueue.entry import (
    DeadLetter,
    DLQFilter,
    DLQStats,
    FingerprintGroup,
    Page,
    SearchPage,
    encode_cursor,
    failure_text_matches,
)
from genqueue.errors import ConfigError, IdempotencyConflict, IllegalTransition
from genqueue.job import EXPIRING_STATES, TRANSITIONS, Job, JobState, Progress


def gone_at_finish(job: Job) -> bool:
    """True for a completed/cancelled job that expires as it finishes (its task keeps no
    finished jobs): the move that finishes it deletes it instead of storing it."""
    return (
        job.state in EXPIRING_STATES
        and job.expires_at is not None
        and job.expires_at <= (job.finished_at or 0.0)
    )


def check_same_data(new: Job, holder: Job) -> Job:
    """``holder`` if it holds ``new``'s idempotency key with the same data, else raise."""
    if serialization.data_digest(new.data) != serialization.data_digest(holder.data):
        raise IdempotencyConflict(new.idempotency_key or "", holder.id)
    return holder


@dataclass(frozen=True)
class Capabilities:
    #: Several processes (and machines) can share this backend.
    shared: bool
    #: ``time()`` is the storage server's clock, not this process's.
    server_time: bool


@dataclass(frozen=True, slots=True)
class Lease:
    job_id: str
    #: The job's ``attempts`` when it was fetched; the fencing token.
    token: int


@dataclass(slots=True)
class Move:
    """Replace a stored job by ``job`` if it is still in ``expect_state`` with ``expect_token``."""

    job: Job
    expect_state: JobState
    expect_token: int
    #: Required when ``job.state`` is DEAD: the entry stored with it.
    entry: DeadLetter | None = None
    #: Apply only if the stored lease has expired by the backend's clock (reclaiming a
    #: job from a lost worker must not race a worker that is still heartbeating).
    require_expired_lease: bool = False

    def __post_init__(self) -> None:
        # Every change of state is a Move, so this is where the state machine is enforced.
        if self.job.state not in TRANSITIONS[self.expect_state]:
            raise IllegalTransition(self.job.id, self.expect_state.value, self.job.state.value)


@dataclass(frozen=True)
class JobQuery:
    queue: str | None = None
    states: frozenset[JobState] | None = None
    task: str | None = None
    user_id: str | None = None
    #: Created at or after (inclusive) / before (exclusive), epoch seconds.
    since: float | None = None
    until: float | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(slots=True)
class RunningUpdate:
    """Fields the lease holder may change while a job runs."""

    progress: Progress | None = None
    remote_job_id: str | None = None
    meta: dict[str, object] | None = None
    cost: dict[str, float] | None = None


class Backend(ABC):
    """Storage primitives; see the module docstring for the rules."""

    url: str
    capabilities: Capabilities

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and prepare storage (create schema, load scripts)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def check_integrity(self) -> None:  # noqa: B027 - optional hook
        """Raise ``StorageCorrupt`` if the stored data is damaged. Workers call it when they
        start; a backend without such a check does nothing."""

    @abstractmethod
    async def time(self) -> float:
        """Now, by the backend's clock (epoch seconds)."""

    # -- producers ----------------------------------------------------------------------

    @abstractmethod
    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        """Store new jobs atomically, all or none.

        Idempotency keys are scoped to a queue: a job whose key is held by a job of the
        same queue that is not terminal is not stored; the holder is returned instead if
        its data is the same (``check_same_data``), else ``IdempotencyConflict`` is raised
        and nothing of the batch is stored.
        """

    def clock_now(self) -> float | None:
        """``time()`` without I/O, for a synchronous caller's thread: None unless the
        backend knows it (then ``enqueue_now`` may store from that thread)."""
        return None

    def enqueue_now(self, jobs: Sequence[Job]) -> list[Job] | None:
        """``enqueue``, called from a synchronous caller's thread instead of the event
        loop (``BlockingClient``): the stored jobs, or None when this backend cannot
        store them from there (not at all, or not now: after a failure that waiting may
        cure). After None the caller sends the same jobs to ``enqueue``, so a backend that
        may have stored them must recognise them as stored."""
        return None

    async def enqueue_in_transaction(self, jobs: Sequence[Job], connection: Any) -> list[Job]:
        """Store ``jobs`` like ``enqueue``, through the caller's own database connection and
        inside its transaction (``enqueue(..., connection=conn)``): they exist if and only
        if that transaction commits. Only a backend in the caller's database can; the
        others refuse."""
        raise ConfigError(
            f"connection= (enqueue inside your own database transaction) needs the "
            f"PostgreSQL backend (postgresql://...); this app uses {type(self).__name__}, "
            "which keeps jobs outside your database: enqueue after your transaction commits"
        )

    @abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        """Jobs newest first (by created_at, then id), with cursor pagination."""

    @abstractmethod
    async def counts(self) -> dict[str, dict[str, int]]:
        """Number of jobs per queue and state."""

    @abstractmethod
    async def oldest_ready(self) -> dict[str, float]:
        """Per queue with queued jobs: the earliest ``run_at`` among them (when the job
        that has waited longest became due), for the queue-latency gauge."""

    async def job_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Ids of stored jobs that start with ``prefix``, sorted, at most ``limit`` (the
        command line's short ids). This default reads every job; backends override it."""
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.list_jobs(JobQuery(cursor=cursor, limit=500))
            found += [job.id for job in page.items if job.id.startswith(prefix)]
            if page.next_cursor is None:
                return sorted(found)[:limit]
            cursor = page.next_cursor

    # -- workers ------------------------------------------------------------------------

    @abstractmethod
    async def fetch(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_seconds: float
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs, oldest due first, under a lease.

        Across several queues only the oldest due job is sure to be among those claimed:
        a backend may fill the batch queue by queue (Redis: oldest head first, as far as
        its estimates go, and a queue kept waiting first: roughly, see redis/fanin.py).

        Promotes due scheduled/retrying jobs first. Each claimed job becomes ACTIVE with
        ``attempts + 1``, ``lease_owner = worker_id``, ``started_at = now`` and
        ``lease_expires_at = now + lease_seconds``.
        """

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Return when jobs of ``queues`` may have become ready, or after ``timeout``.

        The default just sleeps (polling); a backend that can push (Redis pub/sub) wakes
        idle workers at once. Spurious wake-ups are allowed, lost ones only cost latency.
        """
        await asyncio.sleep(timeout)

    @abstractmethod
    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[str]:
        """Extend live leases; return the ids of jobs whose lease is no longer held."""

    @abstractmethod
    async def update_running(self, lease: Lease, update: RunningUpdate) -> bool:
        """Write progress/remote id/meta/cost of a running job; False if the lease is gone."""

    @abstractmethod
    async def move(self, moves: Sequence[Move]) -> list[bool]:
        """Apply each compare-and-set move atomically; True where it was applied."""

    @abstractmethod
    async def expired(self, limit: int) -> list[Job]:
        """Active jobs whose lease has expired (their worker is presumed lost)."""

    @abstractmethod
    async def promote(self, limit: int) -> int:
        """Make due scheduled/retrying jobs queued; return how many moved."""

    @abstractmethod
    async def purge_finished(
        self, now: float, finished_before: float, limit: int, keep: int | None = None
    ) -> int:
        """Delete up to ``limit`` completed/cancelled jobs, the soonest to expire first:
        those whose ``expires_at`` is at or before ``now``; those stored without one
        (finished before expiries were stored) that finished before ``finished_before``;
        and, with ``keep``, each queue's beyond the ``keep`` that expire last."""

    # -- dead letter queue ----------------------------------------------------------------

    @abstractmethod
    async def dlq_get(self, job_id: str) -> DeadLetter | None: ...

    @abstractmethod
    async def dlq_list(self, filter: DLQFilter, cursor: str | None, limit: int) -> Page[DeadLetter]:
        """Entries newest first (by failed_at, then job id), with cursor pagination."""

    @abstractmethod
    async def dlq_count(self, filter: DLQFilter) -> int: ...

    @abstractmethod
    async def dlq_delete(self, job_ids: Sequence[str]) -> list[str]:
        """Delete entries and their dead jobs; return the ids that existed."""

    @abstractmethod
    async def dlq_expire(self, limit: int) -> list[str]:
        """Delete up to ``limit`` entries whose ``expires_at`` has passed; return their ids."""

    # -- shared state (cooldowns, circuit breakers, concurrency slots) ---------------------
    # Small records that every worker process sees, so that a limit learned by one worker
    # (a provider's Retry-After, an open breaker) holds for all. Values are JSON.

    @abstractmethod
    async def state_get(self, key: str) -> tuple[Any, int] | None:
        """The value stored under ``key`` and its version, or None if absent or expired."""

    @abstractmethod
    async def state_put(
        self, key: str, value: Any, *, expect_version: int, ttl: float | None = None
    ) -> int | None:
        """Compare-and-set: store ``value`` if the stored version is ``expect_version``
        (0 means absent or expired); return the new version, or None if it changed."""

    @abstractmethod
    async def slot_acquire(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        """Take (or renew) one of ``limit`` slots under ``key`` for ``ttl`` seconds.

        Expired slots are free. A holder that already has a slot keeps it (and renews it)
        even if the limit has since been lowered.
        """

    @abstractmethod
    async def slot_release(self, key: str, holder: str) -> None:
        """Give the holder's slot back (a no-op if it holds none)."""

    @abstractmethod
    async def slot_count(self, key: str) -> int:
        """Live (unexpired) slots held under ``key``."""

    @abstractmethod
    async def slot_holders(self, key: str) -> list[str]:
        """Who holds the live (unexpired) slots under ``key``."""

    # -- tallies (analytics) -----------------------------------------------------------
    # Counters per minute (bucket = epoch seconds // 60), summed over a range on read.

    @abstractmethod
    async def tally_add(self, bucket: int, counts: Mapping[str, float], keep: float) -> None:
        """Add ``counts`` to ``bucket``; buckets are kept at least ``keep`` seconds."""

    @abstractmethod
    async def tally_read(self, first: int, last: int) -> dict[str, float]:
        """The sum of every count over buckets ``first`` to ``last`` (inclusive)."""

    async def tally_buckets(self, first: int, last: int) -> dict[int, dict[str, float]]:
        """The counts of each bucket ``first`` to ``last`` (inclusive) that has any.
        This default reads bucket by bucket; backends override it with one read."""
        found = {b: await self.tally_read(b, b) for b in range(first, last + 1)}
        return {b: counts for b, counts in found.items() if counts}

    async def dlq_stats(self, filter: DLQFilter, top: int = 10) -> DLQStats:
        """Aggregate matching entries. Backends with a query engine override this."""
        stats = _StatsBuilder()
        cursor: str | None = None
        while True:
            page = await self.dlq_list(filter, cursor, 500)
            for entry in page.items:
                stats.add(entry)
            if page.next_cursor is None:
                return stats.build(top)
            cursor = page.next_cursor

    async def dlq_search(
        self, filter: DLQFilter, text: str, cursor: str | None, limit: int, scan: int
    ) -> SearchPage:
        """Up to ``limit`` entries among the newest ``scan`` matching ``filter`` (after
        ``cursor``) whose failure text contains ``text`` (``failure_text_matches``). This
        default reads the entries in growing chunks; backends with a query engine match
        in it instead."""
        found: list[DeadLetter] = []
        scanned, size = 0, 2 * limit  # a common text fills the page from the first chunk
        while scanned < scan:
            chunk = await self.dlq_list(filter, cursor, min(size, scan - scanned))
            size = min(2 * size, 1000)
            for entry in chunk.items:
                scanned += 1
                if failure_text_matches(entry, text):
                    found.append(entry)
                    if len(found) == limit:
                        return SearchPage(
                            found, encode_cursor(entry.failed_at, entry.job_id), scanned
                        )
            cursor = chunk.next_cursor
            if cursor is None:
                break
        return SearchPage(found, cursor, scanned)

    async def dlq_groups(self, filter: DLQFilter, top: int = 10) -> list[FingerprintGroup]:
        """The ``top`` most frequent fingerprints of the matching entries (``dlq_stats``'s
        groups); backends that can group without the other statistics override it."""
        return (await self.dlq_stats(filter, top)).top_fingerprints


class _StatsBuilder:
    def __init__(self) -> None:
        self.total = 0
        self.kinds: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()
        self.users: Counter[str] = Counter()
        self.days: Counter[str] = Counter()
        self.prints: Counter[str] = Counter()
        self.samples: dict[str, DeadLetter] = {}
        self.print_tasks: dict[str, set[str]] = defaultdict(set)
        self.cost: dict[str, float] = defaultdict(float)

    def add(self, entry: DeadLetter) -> None:
        self.total += 1
        self.kinds[entry.error_kind.value] += 1
        self.tasks[entry.task] += 1
        self.users[entry.user_id or "(none)"] += 1
        self.days[day_of(entry.failed_at)] += 1
        self.prints[entry.fingerprint] += 1
        self.samples.setdefault(entry.fingerprint, entry)
        self.print_tasks[entry.fingerprint].add(entry.task)
        for unit, amount in entry.job.cost.items():
            self.cost[unit] += amount

    def build(self, top: int) -> DLQStats:
        groups = []
        for fp, count in self.prints.most_common(top):
            tasks = sorted(self.print_tasks[fp])
            groups.append(FingerprintGroup.from_sample(fp, count, tasks, self.samples[fp]))
        return DLQStats(
            total=self.total,
            by_kind=dict(self.kinds.most_common()),
            by_task=dict(self.tasks.most_common()),
            by_user=dict(self.users.most_common()),
            by_day=dict(sorted(self.days.items())),
            top_fingerprints=groups,
            cost_lost={k: round(v, 6) for k, v in self.cost.items()},
        )


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
