"""celery: ``celery-solo`` (``--pool=solo``) and ``celery-prefork`` (the default
prefork pool; concurrency = CPU count = 2).

Worker: ``celery -A peers.peer_celery worker -Q bench -l WARNING --without-gossip
--without-mingle --without-heartbeat``. No result backend. Celery acks early (its
default). Bulk: ``group(...).apply_async()`` per 1,000 (kombu still publishes message
by message). Retry: ``autoretry_for=(Flaky,)``, ``max_retries=1, countdown=0``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from celery import Celery, group

from peers import common

QUEUE = "bench"

app = Celery("bench", broker=common.redis_url())
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


class Flaky(RuntimeError):
    pass


@app.task(name="noop")
def noop(i: int) -> None:
    common.COUNTER.bump()


@app.task(
    name="flaky",
    autoretry_for=(Flaky,),
    retry_kwargs={"max_retries": 1, "countdown": 0},
    retry_backoff=False,
    retry_jitter=False,
)
def flaky(i: int) -> None:
    if common.flaky_should_fail(i):
        raise Flaky(f"flaky {i}")


TASKS = {"noop": noop, "flaky": flaky}


class CeleryAdapter(common.Adapter):
    packages = ("celery", "kombu", "redis", "hiredis")
    has_bulk = True

    def __init__(self, config: str) -> None:
        self.config = config or "celery-solo"

    def setup(self) -> None:
        with app.producer_or_acquire() as producer:  # connect before the clock starts
            producer.connection.ensure_connection()

    def single(self, task: str, i: int) -> None:
        TASKS[task].apply_async((i,))

    def bulk(self, task: str, ids: Sequence[int]) -> None:
        sig = TASKS[task]
        group(sig.s(i) for i in ids).apply_async()

    def worker(self) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "celery")
        argv = [exe, "-A", "peers.peer_celery", "worker", "-Q", QUEUE, "-l", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if self.config == "celery-solo":
            argv.append("--pool=solo")
        os.execv(exe, argv)


ADAPTER = CeleryAdapter
