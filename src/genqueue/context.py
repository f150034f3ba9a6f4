"""What a running task sees: its job, and the ways it reports back while it runs.

``progress()`` may be called from any thread (sync tasks run in threads) and as often as
the task likes: writes are coalesced, so at most one is in flight per job and the last
value always lands. ``set_remote_job_id()`` is a write-ahead: it returns only once the
remote id is stored, so a crash after it cannot lose the provider's job.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, cast

from genqueue.backends.base import Lease, RunningUpdate
from genqueue.errors import GenqueueError, InvalidInput
from genqueue.job import Job, Progress

if TYPE_CHECKING:
    # typing_extensions for the default (PEP 696), so a bare ``JobContext`` means
    # ``JobContext[Any]``; only type checkers need it, so it is not imported at run time.
    from typing_extensions import TypeVar

    from genqueue.app import App

    DataT = TypeVar("DataT", default=Any)
else:
    from typing import TypeVar

    DataT = TypeVar("DataT")

Writer = Callable[[Lease, RunningUpdate], Awaitable[bool]]
#: Where ``note()`` keeps details until the attempt is recorded (then they move to it).
NOTES_META = "attempt_notes"


class LeaseLost(GenqueueError):
    """This worker no longer holds the job's lease; another worker may be running it."""


class JobContext(Generic[DataT]):
    """What a task gets. ``JobContext[Model]`` (a pydantic model) types the job's data: it
    is validated at enqueue, and ``ctx.data`` is a ``Model`` instance."""

    def __init__(
        self,
        job: Job,
        app: App,
        worker_id: str,
        writer: Writer,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.job = job
        self.app = app
        self.worker_id = worker_id
        self.log = logging.getLogger(f"genqueue.task.{job.task}")
        self._writer = writer
        self._loop = loop
        self._lease = Lease(job.id, job.attempts)
        self._data: Any = job.data
        self._pending_progress: Progress | None = None
        self._flushing = False

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def data(self) -> DataT:
        """The job's data: its JSON, or the model instance of a typed task."""
        return cast(DataT, self._data)

    def use_data(self, data: DataT) -> None:
        """Give the task ``data`` as ``ctx.data`` (the worker's parsed model of typed data)."""
        self._data = data

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def lease(self) -> Lease:
        return self._lease

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100) and an optional message, visible on the job."""
        if not (isinstance(percent, int | float) and math.isfinite(percent)):
            raise InvalidInput("progress percent must be a number", field="percent")
        now = self.app.clock.now()
        self._pending_progress = Progress(min(max(float(percent), 0.0), 100.0), message, now)
        self.job.progress = self._pending_progress
        if _in_loop(self._loop):
            self._schedule_flush()
        else:
            self._loop.call_soon_threadsafe(self._schedule_flush)

    def _schedule_flush(self) -> None:
        if not self._flushing:
            self._flushing = True
            self._loop.create_task(self._flush_progress())

    async def _flush_progress(self) -> None:
        try:
            while self._pending_progress is not None:
                progress, self._pending_progress = self._pending_progress, None
                await self._writer(self._lease, RunningUpdate(progress=progress))
        finally:
            self._flushing = False

    async def flush(self) -> None:
        """Wait until reported progress is stored."""
        while self._flushing or self._pending_progress is not None:
            if not self._flushing:
                self._schedule_flush()
            await asyncio.sleep(0)

    async def set_remote_job_id(self, remote_job_id: str, **meta: Any) -> None:
        """Store the provider's job id (and bookkeeping) before going on; raises LeaseLost."""
        self.job.remote_job_id = remote_job_id
        self.job.meta.update(meta)
        await self._write(RunningUpdate(remote_job_id=remote_job_id, meta=meta or None))

    async def set_meta(self, **meta: Any) -> None:
        """Store bookkeeping on the job (JSON values) before going on; raises LeaseLost."""
        self.job.meta.update(meta)
        await self._write(RunningUpdate(meta=meta))

    def add_cost(self, **amounts: float) -> None:
        """Record what this attempt cost (e.g. ``usd=0.01, generations=1``)."""
        for unit, amount in amounts.items():
            if not (isinstance(amount, int | float) and math.isfinite(amount)):
                raise InvalidInput(f"cost {unit} must be a number", field=unit)
            self.job.cost[unit] = round(self.job.cost.get(unit, 0.0) + float(amount), 9)
            spent = self.job.meta.setdefault("attempt_cost", {})
            spent[unit] = round(spent.get(unit, 0.0) + float(amount), 9)

    def note(self, **details: Any) -> None:
        """Add details (JSON values) to this attempt's entry in the job's history."""
        self.job.meta.setdefault(NOTES_META, {}).update(details)

    async def save_cost(self) -> None:
        """Store the cost recorded so far, so a crash cannot lose what was spent."""
        await self._write(RunningUpdate(cost=dict(self.job.cost), meta=dict(self.job.meta)))

    async def _write(self, update: RunningUpdate) -> None:
        if not await self._writer(self._lease, update):
            raise LeaseLost()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
