"""How much a worker listening on many queues pays: one queue against 300 (issue 12, item 7).

For each layout it flushes a private ``redis-server`` (started here on a free port in a
temporary directory, nothing persisted), enqueues N no-op jobs spread round robin over the
queues (``enqueue_many`` per 1,000), then runs ONE ``Worker`` in this process on all the
queues and measures:

- **drain jobs/s** = (N - 1) / (last completion - first completion), as bench/peers does;
- **Redis commands per job**: the change of the ``calls`` summed over ``INFO
  commandstats`` (commands inside Lua scripts count) from just before the worker starts to
  the last completion, divided by N; the busiest commands are listed too.

Usage (the project's venv; nothing else needed)::

    .venv/bin/python bench/many_queues.py                 # N=20000, 1 and 300 queues, 3 reps
    .venv/bin/python bench/many_queues.py --n 5000 --queues 1,50,300 --reps 1

Each cell printed is the median over the repetitions (layouts interleaved per repetition).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from genqueue import App, JobRequest, Worker, WorkerSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redis_server import RedisServer


class Server:
    """A private redis-server (the tests' own, nothing persisted) and a client to count
    its commands."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisServer(directory=workdir).start()
        self.url = self.server.url()
        self.client = redis.Redis(port=self.server.port, decode_responses=True)

    def calls(self) -> Counter[str]:
        stats = self.client.info("commandstats")
        return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})

    def stop(self) -> None:
        self.server.close()


async def drain(server: Server, queues: int, n: int, concurrency: int) -> dict[str, Any]:
    server.client.flushall()
    names = ["bench"] if queues == 1 else [f"tenant-{i:03d}" for i in range(queues)]
    app = App(server.url)
    done = 0
    first = last = 0.0
    finished = asyncio.Event()

    @app.task("noop")
    async def noop(ctx: object) -> None:
        nonlocal done, first, last
        last = time.perf_counter()
        if done == 0:
            first = last
        done += 1
        if done == n:
            finished.set()

    async with app:
        requests = [JobRequest("noop", queue=names[i % queues]) for i in range(n)]
        for start in range(0, n, 1000):
            await app.queue.enqueue_many(requests[start : start + 1000])
        worker = Worker(app, queues=names, settings=WorkerSettings(concurrency=concurrency))
        before = server.calls()
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(finished.wait(), 300)
        after = server.calls()
        wall = time.perf_counter() - started
        worker.request_stop()
        await task
    delta = after - before
    total = sum(delta.values())
    return {
        "queues": queues,
        "rate": (n - 1) / (last - first),
        "wall": wall,
        "cmds_per_job": total / n,
        "top": delta.most_common(6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--queues", default="1,300")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    layouts = [int(q) for q in args.queues.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="genqueue-many-queues-"))
    server = Server(workdir)
    results: dict[int, list[dict[str, Any]]] = {q: [] for q in layouts}
    try:
        for rep in range(args.reps):
            for queues in layouts:
                result = asyncio.run(drain(server, queues, args.n, args.concurrency))
                results[queues].append(result)
                top = ", ".join(f"{name} {calls / args.n:.2f}" for name, calls in result["top"])
                print(
                    f"rep {rep + 1} queues={queues}: {result['rate']:,.0f} jobs/s, "
                    f"wall {result['wall']:.2f} s, {result['cmds_per_job']:.2f} cmds/job "
                    f"({top}); load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nN = {args.n:,}, concurrency {args.concurrency}, one worker, medians of {args.reps}:")
    print("| queues | drain jobs/s | Redis commands/job |\n|---|---|---|")
    for queues, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        cmds = statistics.median(r["cmds_per_job"] for r in runs)
        print(f"| {queues} | {rate:,.0f} | {cmds:.2f} |")


if __name__ == "__main__":
    main()
