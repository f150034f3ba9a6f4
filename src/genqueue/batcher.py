"""Group the state changes of many finishing jobs into one backend call.

Jobs that finish while a write is in flight wait for the next one, so under load one
round trip (one SQL transaction, one Lua call) stores many outcomes, and when idle a
single outcome is written at once. A failed write is retried with backoff (a damaged
file, ``StorageCorrupt``, is not); if it keeps failing the callers get the error and their
jobs are recovered later through lease expiry, never lost. A failed move to the DLQ is
also reported as a ``dlq_write_failed`` event (the critical alert of that name).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from genqueue.backends.base import Backend, Move
from genqueue.errors import StorageCorrupt
from genqueue.events import EventName, Events
from genqueue.job import JobState

log = logging.getLogger("genqueue.worker")


class MoveBatcher:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int = 500,
        retries: int = 5,
        events: Events | None = None,
    ) -> None:
        self._backend = backend
        self._events = events
        self._max_batch = max_batch
        self._retries = retries
        self._pending: list[tuple[Move, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, move: Move) -> bool:
        """Store ``move`` with the next batch; True if it was applied."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((move, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="genqueue-move-batcher")
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._write([move for move, _ in batch])
            except Exception as exc:
                self._report(batch, exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), applied in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(applied)

    def _report(self, batch: Sequence[tuple[Move, asyncio.Future[bool]]], exc: Exception) -> None:
        """Name every job of a failed write that was going to the DLQ."""
        if self._events is None:
            return
        for move, _ in batch:
            if move.job.state is JobState.DEAD:
                job = move.job
                self._events.emit(
                    EventName.DLQ_WRITE_FAILED,
                    job_id=job.id,
                    task=job.task,
                    queue=job.queue,
                    error_kind=move.entry.error_kind.value if move.entry is not None else None,
                    error=type(exc).__name__,
                )

    async def _write(self, moves: Sequence[Move]) -> list[bool]:
        delay = 0.05
        for attempt in range(self._retries):
            try:
                return await self._backend.move(moves)
            except StorageCorrupt:
                raise  # retrying cannot mend a damaged file
            except Exception:
                if attempt == self._retries - 1:
                    raise
                log.warning(
                    "storing %d job outcomes failed; retrying in %.2f s",
                    len(moves),
                    delay,
                    exc_info=True,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")
