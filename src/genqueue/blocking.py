"""A blocking client for producers in synchronous code (Django, Flask, scripts).

It runs the app on a private event loop in a daemon thread and blocks the caller until
each call is done, so synchronous code gets the same behaviour as the asyncio API,
including batched enqueue and waiting for results. It is thread-safe.

It offers every operation of the asyncio API, with the same parameters: ``App`` and
``Queue`` methods under their own names (``Queue.list`` is ``list_jobs``), and the dead
letter queue's as ``dlq_<name>``. The methods are written out (so they stay typed); a
test enumerates the async surface and fails when one is missing or differs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

from genqueue.deadletter import DEFAULT_PAGE, SEARCH_SCAN
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, FingerprintGroup, Page, SearchPage
from genqueue.errors import ConfigError
from genqueue.job import Job, JobState
from genqueue.queue import job_request

if TYPE_CHECKING:
    from genqueue.analytics import Analytics
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

    # -- producers (App and Queue) --------------------------------------------------------

    def enqueue(
        self, task: str | Task, data: Any = None, *, connection: Any = None, **options: Any
    ) -> Job:
        _refuse_connection(connection)
        return self.enqueue_many([job_request(task, data, options)])[0]

    def enqueue_many(self, requests: Iterable[JobRequest], *, connection: Any = None) -> list[Job]:
        _refuse_connection(connection)
        return self.app.queue.enqueue_blocking(requests, self.run)

    def get(self, job_id: str) -> Job:
        return self.run(self.app.queue.get(job_id))

    def cancel(self, job_id: str, reason: str = "cancelled by request") -> Job:
        return self.run(self.app.queue.cancel(job_id, reason))

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        return self.run(self.app.queue.wait(job_id, timeout))

    def analytics(
        self, window: float = 3600.0, *, task: str | None = None, top: int = 3
    ) -> Analytics:
        return self.run(self.app.analytics(window, task=task, top=top))

    def list_jobs(
        self,
        *,
        state: JobState | str | Iterable[JobState | str] | None = None,
        queue: str | None = None,
        task: str | None = None,
        user_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Job]:
        return self.run(
            self.app.queue.list(
                state=state,
                queue=queue,
                task=task,
                user_id=user_id,
                since=since,
                until=until,
                cursor=cursor,
                limit=limit,
            )
        )

    # -- dead letter queue (DeadLetterQueue) ------------------------------------------------

    def dlq_get(self, job_id: str) -> DeadLetter:
        return self.run(self.app.dlq.get(job_id))

    def dlq_list(
        self,
        filter: DLQFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[DeadLetter]:
        return self.run(self.app.dlq.list(filter, cursor=cursor, limit=limit))

    def dlq_iterate(self, filter: DLQFilter | None = None) -> Iterator[DeadLetter]:
        """Every matching entry, newest first, fetched in chunks as you iterate."""
        entries = self.app.dlq.iterate(filter)
        try:
            while True:
                more, entry = self.run(_next(entries))
                if not more:
                    return
                assert entry is not None
                yield entry
        finally:
            if not self._closed:
                self.run(entries.aclose())

    def dlq_count(self, filter: DLQFilter | None = None) -> int:
        return self.run(self.app.dlq.count(filter))

    def dlq_stats(self, filter: DLQFilter | None = None, *, top: int = 10) -> DLQStats:
        return self.run(self.app.dlq.stats(filter, top=top))

    def dlq_search(
        self,
        text: str,
        filter: DLQFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
        scan: int = SEARCH_SCAN,
    ) -> SearchPage:
        return self.run(self.app.dlq.search(text, filter, cursor=cursor, limit=limit, scan=scan))

    def dlq_groups(
        self, filter: DLQFilter | None = None, *, top: int = 10
    ) -> list[FingerprintGroup]:
        return self.run(self.app.dlq.groups(filter, top=top))

    def dlq_redrive(self, job_id: str) -> Job:
        return self.run(self.app.dlq.redrive(job_id))

    def dlq_redrive_many(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        filter: DLQFilter | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        sample_size: int = 5,
        by: str = "operator",
    ) -> RedriveReport:
        return self.run(
            self.app.dlq.redrive_many(
                job_ids,
                filter=filter,
                dry_run=dry_run,
                limit=limit,
                sample_size=sample_size,
                by=by,
            )
        )

    def dlq_redrive_edited(self, job_id: str, data: Any, *, by: str = "operator") -> Job:
        return self.run(self.app.dlq.redrive_edited(job_id, data, by=by))

    def dlq_delete(self, job_id: str) -> None:
        self.run(self.app.dlq.delete(job_id))

    def dlq_delete_many(self, job_ids: Iterable[str]) -> list[str]:
        return self.run(self.app.dlq.delete_many(job_ids))

    def dlq_purge(self, filter: DLQFilter | None = None, *, dry_run: bool = False) -> int:
        return self.run(self.app.dlq.purge(filter, dry_run=dry_run))

    def dlq_expire(self) -> int:
        return self.run(self.app.dlq.expire())

    def dlq_export(
        self,
        out: TextIO,
        *,
        format: Literal["jsonl", "csv"] = "jsonl",
        filter: DLQFilter | None = None,
    ) -> int:
        return self.run(self.app.dlq.export(out, format=format, filter=filter))


async def _next(entries: AsyncIterator[DeadLetter]) -> tuple[bool, DeadLetter | None]:
    # A (more, item) pair: StopAsyncIteration is not sent across the thread boundary.
    try:
        return True, await anext(entries)
    except StopAsyncIteration:
        return False, None


def _refuse_connection(connection: Any) -> None:
    if connection is not None:
        # An async connection belongs to its own event loop, not to this client's.
        raise ConfigError(
            "connection= (enqueue inside your own transaction) needs the async API: "
            "await app.enqueue(..., connection=conn) with a psycopg AsyncConnection"
        )
