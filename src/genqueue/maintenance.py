"""Upkeep every worker does for all: reclaiming the jobs of lost workers and enforcing
retention. Any worker may run it at any time; each step is safe to run concurrently
(a reclaim applies only while the job's lease is still expired, a purge deletes each job
once)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from genqueue.errors import StorageCorrupt
from genqueue.events import EventName
from genqueue.execution import Outcome, worker_lost
from genqueue.job import Job

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.worker")

#: Stores a reclaimed job's outcome; True if it applied (nobody took the job meanwhile).
Finish = Callable[[Job, Outcome], Awaitable[bool]]


async def reclaim(app: App, finish: Finish, limit: int = 200) -> int:
    """Fail the jobs of lost workers (expired leases); return how many were reclaimed."""
    count = 0
    for job in await app.backend.expired(limit):
        why = (
            f"worker lost: {job.lease_owner or 'a worker'} stopped renewing the lease "
            f"of attempt {job.attempts}"
        )
        if await finish(job, worker_lost(job, app.classifier_for(job.task, job.queue), why)):
            count += 1
    return count


async def sweep(app: App, batch: int = 1000) -> int:
    """Delete expired dead letters, and finished jobs past their expiry (set as they finish:
    their task's ``keep_finished``, else ``Retention.finished_jobs``) or beyond each queue's
    count cap; return how many finished jobs went."""
    await app.dlq.expire()
    now = await app.backend.time()
    total = 0
    while True:
        removed = await app.backend.purge_finished(
            now, now - app.retention.finished_jobs, batch, app.retention.finished_per_queue
        )
        total += removed
        if removed < batch:
            break
    if total:
        app.events.emit(EventName.JOBS_EXPIRED, count=total)
    return total


async def start_up(app: App, finish: Finish) -> None:
    """One round of everything before a worker fetches its first job."""
    try:
        await app.backend.promote(1000)
        await reclaim(app, finish)
        await sweep(app)
    except StorageCorrupt:
        raise
    except Exception:
        # The side tasks retry these on their own schedule; do not refuse to start.
        log.warning("start-up maintenance failed; continuing", exc_info=True)
