"""genqueue: ``genqueue-redis`` (redis://), ``genqueue-sqlite`` (sqlite:/// file) and
``genqueue-postgres`` (postgresql://, ``BENCH_POSTGRES_URL`` or the machine's server, a
fresh schema per repetition); ``genqueue-redis-sync`` enqueues from synchronous code.

Worker: ``Worker(app, queues=["bench"], WorkerSettings(concurrency=100))``; the ``-c10``
configs run at the default concurrency (10), what a user gets without tuning. Retry:
``RetryPolicy(max_retries=1, base_delay=0, jitter=0)``; the flaky job raises
``TaskError(kind="server")``, a retryable kind. Bulk: ``app.queue.enqueue_many`` with
1,000 ``JobRequest`` per call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import genqueue
from genqueue import App, JobRequest, RetryPolicy, TaskError, Worker, WorkerSettings
from peers import common

QUEUE = "bench"
CONCURRENCY = 100


def concurrency(config: str) -> int:
    return 10 if config.endswith("-c10") else CONCURRENCY


def backend_url(config: str) -> str:
    if config.startswith("genqueue-sqlite"):
        return "sqlite:///" + os.path.join(os.path.abspath(common.data_dir()), "bench.db")
    if config.startswith("genqueue-postgres"):
        return common.postgres_url()
    return common.redis_url()


def make_app(config: str) -> App:
    app = App(backend_url(config), retry=RetryPolicy(max_retries=1, base_delay=0, jitter=0))

    @app.task("noop", queue=QUEUE)
    async def noop(ctx: genqueue.JobContext) -> None:
        common.COUNTER.bump()

    @app.task("flaky", queue=QUEUE)
    async def flaky(ctx: genqueue.JobContext) -> None:
        if common.flaky_should_fail(ctx.data["i"]):
            raise TaskError("flaky", kind="server")

    return app


def run_worker(app: App, config: str) -> None:
    settings = WorkerSettings(concurrency=concurrency(config))
    worker = Worker(app, queues=[QUEUE], settings=settings, handle_signals=True)

    async def run() -> None:
        try:
            await worker.run()
        finally:
            await app.close()

    asyncio.run(run())


class GenqueueAdapter(common.Adapter):
    packages = ("genqueue", "redis", "hiredis", "psycopg")
    is_async = True
    has_bulk = True

    def __init__(self, config: str) -> None:
        self.config = config or "genqueue-redis"
        self.app = make_app(self.config)

    async def setup(self) -> None:
        await self.app.open()

    async def teardown(self) -> None:
        await self.app.close()

    async def single(self, task: str, i: int) -> None:
        await self.app.enqueue(task, {"i": i})

    async def bulk(self, task: str, ids: Sequence[int]) -> None:
        await self.app.queue.enqueue_many([JobRequest(task=task, data={"i": i}) for i in ids])

    def worker(self) -> None:
        run_worker(self.app, self.config)


class BlockingGenqueueAdapter(common.Adapter):
    """``genqueue-redis-sync``: the producer is synchronous code (``app.blocking()``, as a
    Django or Flask view would enqueue), like the producers of RQ, Huey, Celery and
    Dramatiq. The worker is the same as ``genqueue-redis``'s."""

    packages = GenqueueAdapter.packages
    has_bulk = True

    def __init__(self, config: str) -> None:
        self.config = config
        self.app = make_app(config)

    def setup(self) -> None:
        self.client = self.app.blocking()

    def teardown(self) -> None:
        self.client.close()

    def single(self, task: str, i: int) -> None:
        self.client.enqueue(task, {"i": i})

    def bulk(self, task: str, ids: Sequence[int]) -> None:
        self.client.enqueue_many([JobRequest(task=task, data={"i": i}) for i in ids])

    def worker(self) -> None:
        run_worker(self.app, self.config)


def ADAPTER(config: str) -> common.Adapter:  # the name every peer module has
    if config.endswith("-sync"):
        return BlockingGenqueueAdapter(config)
    return GenqueueAdapter(config)
