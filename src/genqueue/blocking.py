"""A blocking client for producers in synchronous code (Django, Flask, scripts).

It runs the app on a private event loop in a daemon thread and blocks the caller until
each call is done, so synchronous code gets the same behaviour as the asyncio API,
including batched enqueue and waiting for results. It is thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from genqueue.entry import DeadLetter, DLQFilter, Page
from genqueue.job import Job

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.deadletter import RedriveReport
    from genqueue.queue import JobRequest
    from genqueue.task import Task

T = TypeVar("T")


class BlockingClient:
    def __init__(self, app: App) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="genqueue-blocking", daemon=True
        )
        self._thread.start()
        self._closed = False
        self.run(app.open())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the client's loop and return its result."""
        if self._closed:
            coro.close()
            raise RuntimeError("this BlockingClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self.run(self.app.close())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- producers ------------------------------------------------------------------------

    def enqueue(self, task: str | Task, data: Any = None, **options: Any) -> Job:
        return self.run(self.app.queue.enqueue(task, data, **options))

    def enqueue_many(self, requests: Iterable[JobRequest]) -> list[Job]:
        return self.run(self.app.queue.enqueue_many(requests))

    def get(self, job_id: str) -> Job:
        return self.run(self.app.queue.get(job_id))

    def cancel(self, job_id: str, reason: str = "cancelled by request") -> Job:
        return self.run(self.app.queue.cancel(job_id, reason))

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        return self.run(self.app.queue.wait(job_id, timeout))

    def list_jobs(self, **filters: Any) -> Page[Job]:
        return self.run(self.app.queue.list(**filters))

    # -- dead letter queue ----------------------------------------------------------------

    def dlq_get(self, job_id: str) -> DeadLetter:
        return self.run(self.app.dlq.get(job_id))

    def dlq_list(self, filter: DLQFilter | None = None, **kwargs: Any) -> Page[DeadLetter]:
        return self.run(self.app.dlq.list(filter, **kwargs))

    def dlq_redrive(self, job_id: str) -> Job:
        return self.run(self.app.dlq.redrive(job_id))

    def dlq_redrive_many(
        self, job_ids: Iterable[str] | None = None, **kwargs: Any
    ) -> RedriveReport:
        return self.run(self.app.dlq.redrive_many(job_ids, **kwargs))

    def dlq_delete(self, job_id: str) -> None:
        self.run(self.app.dlq.delete(job_id))
