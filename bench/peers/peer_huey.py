"""huey: ``huey`` (RedisHuey) and ``huey-sqlite`` (SqliteHuey on a file in the data
directory; completion is still reported through Redis).

Worker: ``huey_consumer peers.peer_huey.huey -w 1 -k thread -q`` (huey's default is one
worker thread). No bulk API (``task.map`` loops over ``enqueue``). Retry:
``@task(retries=1, retry_delay=0)``. huey dequeues without an ack (at-most-once).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from huey import RedisHuey, SqliteHuey

from peers import common

CONFIG = common.config_name("huey")

if CONFIG == "huey-sqlite":
    huey = SqliteHuey("bench", filename=os.path.join(common.data_dir(), "huey-bench.db"))
else:
    huey = RedisHuey("bench", url=common.redis_url())


class Flaky(RuntimeError):
    pass


@huey.task()
def noop(i: int) -> None:
    common.COUNTER.bump()


@huey.task(retries=1, retry_delay=0)
def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


TASKS = {"noop": noop, "flaky": flaky}


class HueyAdapter(common.Adapter):
    packages = ("huey", "redis", "hiredis")

    def __init__(self, config: str) -> None:
        self.config = config or "huey"

    def single(self, task: str, i: int) -> None:
        TASKS[task](i)

    def bulk(self, task: str, ids: Sequence[int]) -> None:
        raise NotImplementedError

    def worker(self) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        os.execv(exe, [exe, "peers.peer_huey.huey", "-w", "1", "-k", "thread", "-q"])


ADAPTER = HueyAdapter
