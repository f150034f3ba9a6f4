"""arq (own venv: arq pins redis<6): ``arq`` (poll_delay 0.5 s, arq's default) and
``arq-poll10ms`` (poll_delay 0.01 s).

Worker: ``arq.worker.Worker(max_jobs=100)`` (arq's default is 10). No bulk API. Retry:
arq retries only on ``Retry`` (or cancellation), so the flaky job raises
``Retry(defer=0)``; ``max_tries`` stays at its default of 5.
"""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Retry, Worker

from peers import common

MAX_JOBS = 100


async def noop(ctx: dict[str, Any], i: int) -> None:
    common.COUNTER.bump()


async def flaky(ctx: dict[str, Any], i: int) -> None:
    if common.flaky_should_fail(i):
        raise Retry(defer=0)


class ArqAdapter(common.Adapter):
    packages = ("arq", "redis", "hiredis")
    is_async = True

    def __init__(self, config: str) -> None:
        self.config = config or "arq"
        self.settings = RedisSettings.from_dsn(common.redis_url())
        self.pool: Any = None

    async def setup(self) -> None:
        self.pool = await create_pool(self.settings)

    async def teardown(self) -> None:
        await self.pool.aclose()

    async def single(self, task: str, i: int) -> None:
        await self.pool.enqueue_job(task, i)

    def worker(self) -> None:
        poll_delay = 0.01 if self.config == "arq-poll10ms" else 0.5
        worker = Worker(
            functions=[noop, flaky],
            redis_settings=self.settings,
            max_jobs=MAX_JOBS,
            poll_delay=poll_delay,
            handle_signals=True,
        )
        worker.run()


ADAPTER = ArqAdapter
