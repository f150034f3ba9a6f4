"""Frozen settings with loud validation, and where the backend URL comes from.

``DEFAULT_BACKEND`` is the embedded SQLite file in the working directory; the
``GENQUEUE_BACKEND`` environment variable overrides it. Settings objects are immutable
and validated when built, so a bad value fails at start-up, not mid-run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from genqueue.classify import ClassifierRules
from genqueue.errors import ConfigError
from genqueue.retry import RetryPolicy

DEFAULT_BACKEND = "sqlite:///genqueue.db"
BACKEND_ENV = "GENQUEUE_BACKEND"
APP_ENV = "GENQUEUE_APP"

HOUR = 3600.0
DAY = 24 * HOUR


def backend_url(explicit: str | None = None) -> str:
    """The backend URL to use: explicit, else ``GENQUEUE_BACKEND``, else the default."""
    return explicit or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class Retention:
    """How long finished work is kept."""

    #: Completed and cancelled jobs are deleted this long after they finished (unless their
    #: task says otherwise: ``@app.task(keep_finished=...)``). Each job's expiry is fixed
    #: as it finishes (``Job.expires_at``): a new value applies to jobs finishing after.
    finished_jobs: float = DAY
    #: ...and each queue keeps at most this many of them, those that expire last (the
    #: newest, where its tasks keep theirs equally long; None: no cap). At a
    #: sustained 1,000 jobs/s a day of finished jobs is 86 million; the cap bounds storage
    #: whatever the rate (BullMQ's ``removeOnComplete: {count}``). Enforced by the sweeper,
    #: so a queue may exceed it by what finishes within one sweep interval (10 s).
    finished_per_queue: int | None = 10_000
    #: Dead letter entries (and their dead jobs) are deleted this long after they failed.
    dead_letters: float = 7 * DAY
    #: An entry that has been redriven this many times is not redriven again.
    max_redrives: int = 3

    def __post_init__(self) -> None:
        _positive("finished_jobs retention", self.finished_jobs, allow_zero=True)
        _positive("dead_letters retention", self.dead_letters, allow_zero=True)
        if self.max_redrives < 0:
            raise ConfigError("max_redrives must be >= 0")
        if self.finished_per_queue is not None and self.finished_per_queue < 0:
            raise ConfigError("finished_per_queue must be >= 0 (or None: no cap)")


@dataclass(frozen=True)
class QueueOptions:
    """Per-queue defaults; a task's own options override them."""

    retry: RetryPolicy | None = None
    classifier: ClassifierRules | None = None


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 10
    #: A fetched job is leased for this long and the lease is renewed by heartbeats.
    lease_seconds: float = 30.0
    #: Heartbeat period; default a third of the lease, so two beats can be missed.
    heartbeat_interval: float | None = None
    #: Longest sleep between fetches when the queue is empty.
    poll_interval: float = 0.5
    #: On SIGTERM/SIGINT, running jobs get this long to finish before they are released.
    shutdown_grace: float = 30.0
    #: How often expired leases are reclaimed.
    reclaim_interval: float | None = None
    #: How often retention (finished jobs, dead letters) is enforced, each worker at its
    #: own moment (+-20 %). Short, so that the finished jobs above a queue's count cap are
    #: deleted a few thousand at a time instead of a minute's worth at once (bench/soak.py).
    sweep_interval: float = 10.0
    #: Check the storage for damage before starting (SQLite: ``PRAGMA quick_check``).
    integrity_check: bool = True
    #: Warn (``loop_blocked``) when the event loop does not run for this long: an async
    #: task calling blocking code stalls every job and cannot be timed out. None: off.
    loop_block_threshold: float | None = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 10_000:
            raise ConfigError(f"concurrency must be an integer 1..10000, got {self.concurrency!r}")
        _positive("lease_seconds", self.lease_seconds)
        _positive("poll_interval", self.poll_interval)
        _positive("shutdown_grace", self.shutdown_grace, allow_zero=True)
        _positive("sweep_interval", self.sweep_interval)
        if self.heartbeat_interval is not None:
            _positive("heartbeat_interval", self.heartbeat_interval)
            if self.heartbeat_interval >= self.lease_seconds:
                raise ConfigError("heartbeat_interval must be shorter than lease_seconds")
        if self.reclaim_interval is not None:
            _positive("reclaim_interval", self.reclaim_interval)
        if self.loop_block_threshold is not None:
            _positive("loop_block_threshold", self.loop_block_threshold)

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.lease_seconds / 3

    @property
    def reclaim_every(self) -> float:
        return self.reclaim_interval or max(min(self.lease_seconds / 2, 5.0), 0.05)
