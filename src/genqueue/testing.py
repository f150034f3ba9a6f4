"""Helpers for testing code that uses genqueue (no Redis, no files, no sleeping).

    from genqueue import App, FakeClock
    from genqueue.testing import run_until_idle

    clock = FakeClock()
    app = App("memory://", clock=clock)      # the in-memory backend, same semantics
    ...register tasks, enqueue jobs...
    await run_until_idle(app)               # runs every due job, then returns
    clock.advance(5)                        # make retries and delayed jobs due
    await run_until_idle(app)

``run_until_idle`` runs a real worker in burst mode: jobs are serialised, classified,
retried and dead-lettered exactly as in production.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from genqueue.app import App
from genqueue.settings import WorkerSettings
from genqueue.worker import Worker


async def run_until_idle(
    app: App,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    lease_seconds: float = 30.0,
) -> Counter[str]:
    """Run a burst worker until nothing is running or due; return what it did by state."""
    settings = WorkerSettings(
        concurrency=concurrency, lease_seconds=lease_seconds, poll_interval=0.01
    )
    # The worker opens the app if needed; closing it is left to the caller.
    return await Worker(app, queues=queues, burst=True, settings=settings).run()
