"""What a finished job costs at rest: bytes per completed no-op job, Redis and SQLite.

Enqueues N no-op jobs (data ``{}``, the task returns None), runs them to completion
with a burst worker (the real completion path: plan -> move), then reads

- Redis: ``INFO memory`` ``used_memory`` before and after, on a private
  ``redis-server`` started on a free port (``tests/redis_server.py``), and
  ``MEMORY USAGE`` of each of the queue's keys (which structure the bytes are in);
- SQLite: the database size (``page_count - freelist_count`` pages, after a WAL
  checkpoint) before and after.

Retention is set to keep everything for the run (a day, no count cap), so nothing is
purged while measuring. Not a test: the figures are in bench/README.md.

    .venv/bin/python bench/finished_size.py [--n 100000] [--backends redis,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genqueue import App, JobRequest, Worker, WorkerSettings
from genqueue.settings import Retention

BATCH = 1000
KEEP_ALL = Retention(finished_jobs=7 * 86400.0, finished_per_queue=None)


def make_app(url: str, options: dict[str, Any]) -> App:
    app = App(url, retention=KEEP_ALL)

    @app.task("noop", **options)
    async def noop(ctx: Any) -> None:
        return None

    return app


async def complete(app: App, n: int, concurrency: int) -> float:
    """Enqueue n jobs and run them all; return the seconds the run took."""
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        await app.queue.enqueue_many([JobRequest("noop", {})] * min(BATCH, n - first))
    settings = WorkerSettings(concurrency=concurrency, poll_interval=0.01, sweep_interval=3600)
    await Worker(app, burst=True, settings=settings).run()
    counts = await app.backend.counts()
    done = counts.get("default", {}).get("completed", 0)
    if done != n:
        raise SystemExit(f"expected {n} completed jobs, found {counts}")
    return time.perf_counter() - started


async def redis_size(n: int, concurrency: int, options: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as redis
    from tests.redis_server import RedisServer

    server = RedisServer().start()
    try:
        client = redis.Redis(port=server.port)
        app = make_app(server.url("bench"), options)
        async with app:
            before = (await client.info("memory"))["used_memory"]
            seconds = await complete(app, n, concurrency)
            after = (await client.info("memory"))["used_memory"]
            keys = {}
            async for key in client.scan_iter("{bench:default}:*"):
                usage = await client.memory_usage(key, samples=0) or 0
                keys[key.decode().split("}:", 1)[1]] = round(usage / n, 1)
            body_id = (await client.hkeys("{bench:default}:body"))[0]
            body = await client.hget("{bench:default}:body", body_id)
            hot = await client.hget("{bench:default}:hot", body_id)
        await client.aclose()
    finally:
        server.close()
    return {
        "bytes_per_job": round((after - before) / n, 1),
        "seconds": round(seconds, 1),
        "per_key": dict(sorted(keys.items(), key=lambda kv: -kv[1])),
        "body_len": len(body or b""),
        "hot_len": len(hot or b""),
        "body": (body or b"").decode(),
    }


def sqlite_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


async def sqlite_size(n: int, concurrency: int, options: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        app = make_app(f"sqlite:///{path}", options)
        async with app:
            before = sqlite_bytes(path)
            seconds = await complete(app, n, concurrency)
        after = sqlite_bytes(path)
        file_size = path.stat().st_size
    return {
        "bytes_per_job": round((after - before) / n, 1),
        "file_bytes_per_job": round(file_size / n, 1),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--backends", default="redis,sqlite")
    parser.add_argument(
        "--no-result", action="store_true", help="register the task with keep_result=False"
    )
    args = parser.parse_args()
    options = {"keep_result": False} if args.no_result else {}
    print(f"N={args.n} concurrency={args.concurrency} options={options}")
    print(f"load average before: {os.getloadavg()}")
    for backend in args.backends.split(","):
        measure = {"redis": redis_size, "sqlite": sqlite_size}[backend]
        result = asyncio.run(measure(args.n, args.concurrency, options))
        print(backend, result)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
