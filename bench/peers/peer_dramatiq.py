"""dramatiq: ``dramatiq``.

Worker: ``dramatiq peers.peer_dramatiq --processes 1 --threads 8`` (dramatiq's default
is 2 processes x 8 threads): a main process plus one worker process. No bulk API
(``group().run()`` sends message by message). Retry: actor ``max_retries=1,
min_backoff=0, max_backoff=0``; the retry goes through dramatiq's delay queue.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers import common

QUEUE = "bench"
PROCESSES = 1
THREADS = 8

broker = RedisBroker(url=common.redis_url())
dramatiq.set_broker(broker)


class Flaky(RuntimeError):
    pass


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(i: int) -> None:
    common.COUNTER.bump()


@dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=0, max_backoff=0)
def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


TASKS = {"noop": noop, "flaky": flaky}


class DramatiqAdapter(common.Adapter):
    packages = ("dramatiq", "redis", "hiredis")

    def __init__(self, config: str) -> None:
        self.config = config or "dramatiq"

    def single(self, task: str, i: int) -> None:
        TASKS[task].send(i)

    def bulk(self, task: str, ids: Sequence[int]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "dramatiq")
        argv = [
            exe,
            "peers.peer_dramatiq",
            "--processes",
            str(PROCESSES),
            "--threads",
            str(THREADS),
        ]
        os.execv(exe, argv)


ADAPTER = DramatiqAdapter
