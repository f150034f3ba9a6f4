"""The worker outlives storage failures: fetch errors back off, then work resumes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from genqueue import App, BackendError, JobState, Worker, WorkerSettings
from genqueue.backends.memory import MemoryBackend


class FlakyBackend(MemoryBackend):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise BackendError("storage is unreachable")
        return await super().fetch(*args, **kwargs)


async def test_fetch_failures_back_off_and_recover(caplog: pytest.LogCaptureFixture) -> None:
    backend = FlakyBackend(failures=3)
    app = App(backend)

    @app.task("t")
    async def task(ctx):  # type: ignore[no-untyped-def]
        return "ok"

    async with app:
        job = await app.enqueue("t", {})
        backend.failures = 3
        with caplog.at_level(logging.WARNING, logger="genqueue.worker"):
            await Worker(app, burst=True, settings=WorkerSettings(poll_interval=0.01)).run()
        assert (await app.get(job.id)).state is JobState.COMPLETED
    assert "fetching jobs failed (3 in a row)" in caplog.text
    assert "works again after 3 failures" in caplog.text


class SwallowingBackend(MemoryBackend):
    """A client library that swallows a cancellation (redis-py has done this)."""

    async def promote(self, limit: int) -> int:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "genqueue-promoter":
            # The side loop's call hangs until cancelled, then swallows the cancellation.
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return 0
        return await super().promote(limit)


async def test_a_swallowed_cancellation_does_not_keep_a_burst_worker_alive() -> None:
    app = App(SwallowingBackend())

    @app.task("t")
    async def task(ctx):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.2)  # by then the promoter is stuck in a call

    async with app:
        await app.enqueue("t", {})
        worker = Worker(app, burst=True, settings=WorkerSettings(poll_interval=0.025))
        async with asyncio.timeout(5):
            await worker.run()
