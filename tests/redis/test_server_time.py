"""Leases and due times follow the Redis server's clock, not the workers' clocks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from genqueue import App, JobState, Worker, WorkerSettings
from genqueue.clock import OffsetClock
from tests.redis_server import redis_url_for_test, session_server

pytestmark = pytest.mark.redis
SKEW = 300.0


async def redis_time() -> float:
    client = aioredis.Redis(port=session_server().port)
    try:
        seconds, micros = await client.time()
        return float(seconds + micros / 1e6)
    finally:
        await client.aclose()


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
async def test_backend_time_is_the_servers(skew: float) -> None:
    async with App(redis_url_for_test(), clock=OffsetClock(skew)) as app:
        assert app.backend.capabilities.server_time
        assert abs(await app.backend.time() - await redis_time()) < 0.5
        assert abs(app.clock.now() - await redis_time() - skew) < 0.5


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
async def test_a_skewed_worker_does_not_fire_a_delayed_job_early(skew: float) -> None:
    url = redis_url_for_test()
    started: list[float] = []
    producer = App(url, clock=OffsetClock(-skew))
    worker_app = App(url, clock=OffsetClock(skew))

    @worker_app.task("t")
    async def t(ctx: Any) -> None:
        started.append(await redis_time())

    producer.task("t")(t.fn)
    async with producer, worker_app:
        job = await producer.enqueue("t", {}, delay=1.0)
        due = job.run_at
        settings = WorkerSettings(concurrency=2, poll_interval=0.02, sweep_interval=3600)
        worker = Worker(worker_app, settings=settings)
        runner = asyncio.create_task(worker.run())
        try:
            for _ in range(500):
                if started:
                    break
                await asyncio.sleep(0.02)
        finally:
            worker.request_stop()
            await asyncio.wait_for(runner, 10)
        assert started, "the delayed job never ran"
        assert started[0] >= due  # never early by the server clock
        assert started[0] < due + 5  # and not stuck
        assert (await producer.get(job.id)).state is JobState.COMPLETED


async def test_a_fast_clock_does_not_steal_a_live_lease() -> None:
    url = redis_url_for_test()
    slow_app = App(url, clock=OffsetClock(-SKEW))
    fast_app = App(url, clock=OffsetClock(SKEW))
    runs: list[str] = []
    release = asyncio.Event()

    @slow_app.task("long")
    async def long(ctx: Any) -> str:
        runs.append(ctx.worker_id)
        await release.wait()
        return "done"

    fast_app.task("long")(long.fn)
    lease = WorkerSettings(
        concurrency=1, lease_seconds=1.0, poll_interval=0.02, reclaim_interval=0.05
    )
    async with slow_app, fast_app:
        job = await slow_app.enqueue("long", {})
        holder = Worker(slow_app, settings=lease, worker_id="slow")
        thief = Worker(fast_app, settings=lease, worker_id="fast")
        tasks = [asyncio.create_task(holder.run())]
        while not runs:
            await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(thief.run()))
        started = time.monotonic()
        # Several lease lengths pass; the holder heartbeats, the thief keeps reclaiming.
        while time.monotonic() - started < 2.5:
            assert await thief.reclaim() == 0
            await asyncio.sleep(0.05)
        release.set()
        for _ in range(200):
            if (await slow_app.get(job.id)).state is JobState.COMPLETED:
                break
            await asyncio.sleep(0.02)
        holder.request_stop()
        thief.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        done = await slow_app.get(job.id)
        assert done.state is JobState.COMPLETED and done.attempts == 1
        assert runs == ["slow"]
        assert holder.stats["lease_lost"] == 0
