"""Quick local measurement of genqueue on Redis (not a test; not collected by pytest).

    .venv/bin/python -m tests.redis.perf_probe [--jobs 20000] [--concurrency 100] [--runs 3]

Starts its own redis-server (persistence off, like bench/peers), enqueues N no-op jobs in
batches of 1,000, then drains them with ONE worker (in this process) and reports jobs/s
for both phases, Redis commands per job (``total_commands_processed``, which counts the
commands run inside Lua too) and Redis CPU per job. ``--profile`` writes a cProfile of
the drain to perf_probe.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import statistics
import time
from typing import Any

import redis
from genqueue import App, JobRequest, Worker, WorkerSettings
from tests.redis_server import RedisServer


def redis_stats(client: redis.Redis) -> tuple[int, float]:
    info = client.info()
    return int(info["total_commands_processed"]), float(info["used_cpu_sys"]) + float(
        info["used_cpu_user"]
    )


async def one_run(server: RedisServer, args: argparse.Namespace, run: int) -> dict[str, Any]:
    client = redis.Redis(port=server.port)
    client.flushall()
    app = App(server.url(f"probe{run}"))

    @app.task("noop")
    async def noop(ctx: Any) -> None:
        return None

    async with app:
        t0 = time.perf_counter()
        for start in range(0, args.jobs, 1000):
            n = min(1000, args.jobs - start)
            await app.queue.enqueue_many([JobRequest("noop", {"i": start + i}) for i in range(n)])
        enqueue_s = time.perf_counter() - t0
        settings = WorkerSettings(
            concurrency=args.concurrency, poll_interval=0.05, sweep_interval=3600
        )
        worker = Worker(app, burst=True, settings=settings)
        commands0, cpu0 = redis_stats(client)
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        stats = await worker.run()
        if profiler:
            profiler.disable()
            profiler.dump_stats("perf_probe.prof")
        drain_s = time.perf_counter() - t0
        commands1, cpu1 = redis_stats(client)
        assert stats["completed"] == args.jobs, stats
    client.close()
    return {
        "enqueue_jobs_s": args.jobs / enqueue_s,
        "drain_jobs_s": args.jobs / drain_s,
        "commands_per_job": (commands1 - commands0) / args.jobs,
        "redis_cpu_us_per_job": (cpu1 - cpu0) * 1e6 / args.jobs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    server = RedisServer().start()
    try:
        results = [await one_run(server, args, run) for run in range(args.runs)]
    finally:
        server.close()
    for key in results[0]:
        values = [r[key] for r in results]
        digits = 2 if max(values) < 10 else 0
        print(
            f"{key:>22}: median {statistics.median(values):9.{digits}f}  "
            f"(runs: {', '.join(f'{v:.{digits}f}' for v in values)})"
        )


if __name__ == "__main__":
    asyncio.run(main())
