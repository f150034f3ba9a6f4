"""Where sync (``def``) tasks run: one daemon thread per attempt, never stopped early.

A thread cannot be stopped from outside. So when an attempt is cancelled while its thread
runs (its timeout expired), the attempt keeps waiting for the thread: the worker keeps
the job's slot and lease, and nobody starts the job again, until the thread has
returned. Only when the worker gives up on the job (a forced stop: the process is about
to exit) does the attempt stop waiting; the thread dies with the process.

The threads are daemons for that reason: a ``ThreadPoolExecutor`` joins its threads at
interpreter exit, so one stuck task would keep a stopped worker's process alive forever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class TaskThread:
    """One attempt of a sync task, run in its own thread."""

    def __init__(
        self, name: str, on_overrun: Callable[[str], None], given_up: Callable[[], bool]
    ) -> None:
        self.name = name
        #: Called (in the loop, with "timeout" or "cancelled") when the attempt is cancelled
        #: but its thread runs on.
        self._on_overrun = on_overrun
        #: Whether the worker gave up on the job, so its attempt stops waiting for the thread.
        self._given_up = given_up
        self._future: Future[Any] | None = None

    @property
    def alive(self) -> bool:
        """The thread was started and has not returned yet."""
        return self._future is not None and not self._future.done()

    async def run(self, fn: Callable[[], Any], timed_out: Callable[[], bool]) -> Any:
        """Run ``fn`` in the thread and return what it returns (or raise what it raises).

        If the caller is cancelled while the thread runs, this waits for the thread before
        the cancellation goes on, unless the worker gives up on the job.
        """
        future = self._future = _start(fn, self.name)
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(_retrieve)
        try:
            await asyncio.wait({waiter})
        except asyncio.CancelledError:
            if self.alive and not self._given_up():
                self._on_overrun("timeout" if timed_out() else "cancelled")
                await self._join(waiter)
            raise
        # Raised here rather than awaited: asyncio throws an awaited future's exception
        # into the task, and a GeneratorExit thrown in closes every coroutine on the way.
        return waiter.result()

    async def _join(self, waiter: asyncio.Future[Any]) -> None:
        # What the thread returns or raises no longer counts: the attempt already ended.
        while not waiter.done():
            try:
                await asyncio.wait({waiter})
            except asyncio.CancelledError:
                if self._given_up():
                    raise
                # Anyone else's cancellation waits: a job whose copy still runs must not
                # be started again, so its attempt cannot end before its thread does.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()


def _start(fn: Callable[[], Any], name: str) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # SystemExit too: it is the task's, not the thread's
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _retrieve(waiter: asyncio.Future[Any]) -> None:
    if not waiter.cancelled():
        waiter.exception()
