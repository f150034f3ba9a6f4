"""taskiq + taskiq-redis: ``taskiq-stream`` (RedisStreamBroker: XREADGROUP + XACK) and
``taskiq-list`` (ListQueueBroker: BRPOP, no ack).

Worker: ``taskiq worker peers.peer_taskiq:broker --workers 1 --max-async-tasks 100``
(taskiq's default is 2 worker processes); a supervisor plus one child. No bulk API.
Retry: ``SimpleRetryMiddleware``; the flaky task has ``retry_on_error=True,
max_retries=2`` (taskiq counts attempts) and is re-kicked at once.
"""

from __future__ import annotations

import os
import sys

from taskiq.middlewares import SimpleRetryMiddleware
from taskiq_redis import ListQueueBroker, RedisStreamBroker

from peers import common

QUEUE = "bench"
CONFIG = common.config_name("taskiq-stream")

if CONFIG == "taskiq-list":
    _broker = ListQueueBroker(common.redis_url(), queue_name=QUEUE)
else:
    _broker = RedisStreamBroker(common.redis_url(), queue_name=QUEUE)
broker = _broker.with_middlewares(SimpleRetryMiddleware(default_retry_count=2))


class Flaky(RuntimeError):
    pass


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    common.COUNTER.bump()


@broker.task(task_name="flaky", retry_on_error=True, max_retries=2)
async def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


TASKS = {"noop": noop, "flaky": flaky}


class TaskiqAdapter(common.Adapter):
    packages = ("taskiq", "taskiq-redis", "redis", "hiredis")
    is_async = True

    def __init__(self, config: str) -> None:
        self.config = config or "taskiq-stream"

    async def setup(self) -> None:
        await broker.startup()

    async def teardown(self) -> None:
        await broker.shutdown()

    async def single(self, task: str, i: int) -> None:
        await TASKS[task].kiq(i)

    def worker(self) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "taskiq")
        argv = [exe, "worker", "peers.peer_taskiq:broker", "--workers", "1"]
        argv += ["--max-async-tasks", "100", "--log-level", "WARNING"]
        os.execv(exe, argv)


ADAPTER = TaskiqAdapter
