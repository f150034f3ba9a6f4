"""rq: ``rq`` (default ``Worker``, forks a work horse per job) and ``rq-simple``
(``SimpleWorker``, no fork).

Bulk: ``Queue.enqueue_many`` of ``Queue.prepare_data(...)``, one pipeline per 1,000.
Retry: ``Retry(max=1, interval=0)``. The work horse of the forking worker exits with
``os._exit``, so there the counter is written synchronously (``BENCH_SYNC_COUNTER=1``,
set by the driver), one pipelined round trip per job.
"""

from __future__ import annotations

from collections.abc import Sequence

from rq import Queue, Retry, SimpleWorker, Worker

from peers import common
from redis import Redis

QUEUE = "bench"


class Flaky(RuntimeError):
    pass


def noop(i: int) -> None:
    common.COUNTER.bump()


def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


TASKS = {"noop": noop, "flaky": flaky}
RETRY = {"noop": None, "flaky": Retry(max=1, interval=0)}


class RqAdapter(common.Adapter):
    packages = ("rq", "redis", "hiredis")
    has_bulk = True

    def __init__(self, config: str) -> None:
        self.config = config or "rq"
        self.redis = Redis.from_url(common.redis_url())
        self.queue = Queue(QUEUE, connection=self.redis)

    def single(self, task: str, i: int) -> None:
        self.queue.enqueue(TASKS[task], i, retry=RETRY[task])

    def bulk(self, task: str, ids: Sequence[int]) -> None:
        fn, retry = TASKS[task], RETRY[task]
        self.queue.enqueue_many([Queue.prepare_data(fn, args=(i,), retry=retry) for i in ids])

    def worker(self) -> None:
        cls = SimpleWorker if self.config == "rq-simple" else Worker
        cls([self.queue], connection=self.redis).work(logging_level="WARNING")


ADAPTER = RqAdapter
