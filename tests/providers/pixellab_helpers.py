"""Helpers for the PixelLab task tests: settings for the fake, an app, a worker loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.conftest import backend_url
from tests.providers.conftest import KEY

from genqueue import App, JobRequest, JobState, RetryPolicy, Worker, WorkerSettings
from genqueue.providers.fake_pixellab import FakePixelLab
from genqueue.providers.guard import BreakerSettings
from genqueue.providers.ledger import LedgerSettings
from genqueue.providers.pixellab import PixelLab, PixelLabSettings, register

PIXFLUX = {"description": "a knight", "image_size": {"width": 64, "height": 64}}
PRO = {"description": "a knight", "image_size": {"width": 128, "height": 128}}


def settings(fake: FakePixelLab, out: Path, **changes: Any) -> PixelLabSettings:
    base: dict[str, Any] = {
        "api_key": KEY,
        "base_url": fake.base_url,
        "output_dir": out,
        "poll_interval": 0.02,
        "lost_grace": 0.3,
        "read_timeout": 5.0,
        "breaker": BreakerSettings(
            cooldown=0.2, auth_cooldown=0.2, max_cooldown=0.5, failure_threshold=50
        ),
        # The fake settles charges at once; a short lag keeps the readings quick.
        "ledger": LedgerSettings(settlement_lag=0.1, reconcile_after=0.2, inflight_grace=0.5),
    }
    return PixelLabSettings(**{**base, **changes})


@asynccontextmanager
async def pixellab_app(
    fake: FakePixelLab,
    tmp_path: Path,
    max_retries: int = 2,
    backend: str = "sqlite",
    **changes: Any,
) -> AsyncIterator[tuple[App, PixelLab]]:
    app = App(
        backend_url(backend, tmp_path),
        retry=RetryPolicy(base_delay=0.05, jitter=0, max_retries=max_retries),
    )
    integration = register(app, settings(fake, tmp_path / "out", **changes))
    try:
        async with app:
            yield app, integration
    finally:
        await integration.aclose()


async def run_until(
    app: App, done: Callable[[], Awaitable[bool]], *, concurrency: int = 4, timeout: float = 30
) -> None:
    worker = Worker(
        app,
        queues=["pixellab"],
        settings=WorkerSettings(concurrency=concurrency, poll_interval=0.02, lease_seconds=10),
    )
    runner = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                if runner.done():
                    runner.result()
                await asyncio.sleep(0.03)
    finally:
        worker.request_stop()
        await runner


async def enqueue(
    app: App, operation: str, params: dict[str, Any], n: int = 1, **options: Any
) -> list[str]:
    requests = [
        JobRequest("pixellab.generate", {"operation": operation, "params": params}, **options)
        for _ in range(n)
    ]
    return [j.id for j in await app.queue.enqueue_many(requests)]


def terminal(app: App, ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = [(await app.get(i)).state for i in ids]
        return all(s in (JobState.COMPLETED, JobState.DEAD) for s in states)

    return check
