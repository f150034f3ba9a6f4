"""saq (own venv: ``saq[redis]`` pins redis<8): ``saq``.

Worker: ``saq.Worker(queue, concurrency=100)`` (saq's default is 10), run as the ``saq``
CLI does (connect, ``worker.start()``). No bulk API (``Queue.map`` gathers single
enqueues and waits for the results). Retry: ``retries=2`` (saq counts attempts),
``retry_delay=0``; any exception retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue, Worker

from peers import common

QUEUE = "bench"
CONCURRENCY = 100


class Flaky(RuntimeError):
    pass


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    common.COUNTER.bump()


async def flaky(ctx: dict[str, Any], *, i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


class SaqAdapter(common.Adapter):
    packages = ("saq", "redis", "hiredis")
    is_async = True

    def __init__(self, config: str) -> None:
        self.config = config or "saq"
        self.queue = Queue.from_url(common.redis_url(), name=QUEUE)

    async def setup(self) -> None:
        await self.queue.connect()

    async def teardown(self) -> None:
        await self.queue.disconnect()

    async def single(self, task: str, i: int) -> None:
        if task == "flaky":
            await self.queue.enqueue("flaky", i=i, retries=2, retry_delay=0.0)
        else:
            await self.queue.enqueue("noop", i=i)

    def worker(self) -> None:
        worker = Worker(self.queue, functions=[noop, flaky], concurrency=CONCURRENCY)

        async def run() -> None:
            await self.queue.connect()
            try:
                await worker.start()
            finally:
                await self.queue.disconnect()

        asyncio.run(run())


ADAPTER = SaqAdapter
