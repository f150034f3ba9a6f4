"""What a burst worker has not run yet: retries and snoozes that are not due.

A burst worker (``Worker(burst=True)``, ``genqueue worker --burst``) stops once nothing
is running or due. Jobs waiting for a retry or a snooze are neither, yet one due in a
second is work the user expects the burst to do: the worker waits for those due within
its ``burst_horizon`` and, when it stops, says what it left (``Worker.burst_left``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genqueue.backends.base import Backend, JobQuery
from genqueue.job import DELAYED_STATES


@dataclass(frozen=True)
class Left:
    """Jobs of the worker's queues waiting for a retry or a snooze."""

    count: int
    #: Seconds until the first of them is due (None when there are none).
    next_in: float | None


async def delayed_jobs(backend: Backend, queues: Sequence[str]) -> Left:
    """Count the scheduled and retrying jobs of ``queues`` and find the first due."""
    now = await backend.time()
    count, first = 0, None
    for queue in queues:
        cursor: str | None = None
        while True:
            query = JobQuery(queue=queue, states=DELAYED_STATES, cursor=cursor, limit=500)
            page = await backend.list_jobs(query)
            count += len(page.items)
            for job in page.items:
                first = job.run_at if first is None else min(first, job.run_at)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return Left(count, None if first is None else max(0.0, first - now))
