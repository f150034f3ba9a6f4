"""streaq: ``streaq`` (concurrency 100) and ``streaq-c32`` (concurrency 32, the setting
of streaq's own benchmark).

Worker: ``Worker(concurrency=...)`` run with ``worker.run_sync()`` as ``streaq run``
does. Bulk: ``worker.enqueue_many`` (one pipeline per 1,000). Retry: plain exceptions
fail the task, so the flaky task raises ``StreaqRetry(delay=0)``; ``max_tries`` 3.
"""

from __future__ import annotations

from collections.abc import Sequence

from streaq import StreaqRetry, Worker

from peers import common

QUEUE = "bench"
CONFIG = common.config_name("streaq")

sq = Worker(
    redis_url=common.redis_url(),
    queue_name=QUEUE,
    concurrency=32 if CONFIG == "streaq-c32" else 100,
)


@sq.task()
async def noop(i: int) -> None:
    common.COUNTER.bump()


@sq.task()
async def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise StreaqRetry("flaky", delay=0)


TASKS = {"noop": noop, "flaky": flaky}


class StreaqAdapter(common.Adapter):
    packages = ("streaq", "coredis")
    is_async = True
    has_bulk = True

    def __init__(self, config: str) -> None:
        self.config = config or "streaq"

    async def setup(self) -> None:
        await sq.__aenter__()

    async def teardown(self) -> None:
        await sq.__aexit__(None, None, None)

    async def single(self, task: str, i: int) -> None:
        await TASKS[task].enqueue(i)

    async def bulk(self, task: str, ids: Sequence[int]) -> None:
        fn = TASKS[task]
        await sq.enqueue_many([fn.enqueue(i) for i in ids])

    def worker(self) -> None:
        sq.run_sync()


ADAPTER = StreaqAdapter
