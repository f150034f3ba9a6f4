"""Group commit for the SQLite backend's enqueues.

Enqueues that arrive while a write is in flight share the next transaction, each under
its own ``SAVEPOINT``: under load one thread hop and one commit (one WAL append) store
the jobs of many callers, and when idle a single enqueue is written at once. Every call
stays all-or-nothing on its own: a call that fails (a job id already taken, an
idempotency conflict) is rolled back to its savepoint and gets its error, and the other
calls of the group are committed. An error that ends the transaction itself (busy, disk
full, a damaged file) fails every call of the group, and nothing of it is stored.

A caller is answered only after the commit, so a job it was told about is on disk. A
caller cancelled before its group is written is left out of it (like a thread-pool job
that never started); once its group is being written, it is stored.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from genqueue.backends.sqlite import integrity

T = TypeVar("T")
Statement = Callable[[sqlite3.Connection], Any]
Call = tuple[Statement, "asyncio.Future[Any]"]
#: Runs a function in one write transaction, in the backend's thread.
Writer = Callable[[Callable[[sqlite3.Connection], list[tuple[bool, Any]]]], Awaitable[Any]]
SAVEPOINT = "genqueue_call"


class GroupedWrites:
    def __init__(self, write: Writer, *, max_calls: int = 256) -> None:
        self._write = write
        self._max_calls = max_calls
        self._pending: list[Call] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Transactions written so far (for tests and diagnostics).
        self.transactions = 0

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next group's transaction; its result, or its exception."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="genqueue-sqlite-group")
        result: T = await future
        return result

    async def _flush(self) -> None:
        while self._pending:
            chunk = self._pending[: self._max_calls]
            del self._pending[: self._max_calls]
            group = [(fn, future) for fn, future in chunk if not future.done()]
            if group:
                await self._write_group(group)

    async def _write_group(self, group: list[Call]) -> None:
        self.transactions += 1
        try:
            outcomes = await self._write(functools.partial(_run_group, group=group))
        except asyncio.CancelledError:  # the loop is going away: nobody is answered
            for _, future in [*group, *self._pending]:
                future.cancel()
            raise
        except Exception as exc:  # the transaction failed: every call of it fails
            outcomes = [(False, exc)] * len(group)
        for (_, future), (ok, value) in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _run_group(conn: sqlite3.Connection, group: list[Call]) -> list[tuple[bool, Any]]:
    """In the backend's thread, inside the transaction: each call under its savepoint."""
    outcomes: list[tuple[bool, Any]] = []
    for fn, _ in group:
        conn.execute(f"SAVEPOINT {SAVEPOINT}")
        try:
            value = fn(conn)
        except Exception as exc:
            # SQLite rolls the whole transaction back on some errors (and a damaged file
            # is never written on): then the group as a whole fails.
            if not conn.in_transaction or (
                isinstance(exc, sqlite3.DatabaseError) and integrity.is_damage(exc)
            ):
                raise
            conn.execute(f"ROLLBACK TO {SAVEPOINT}")
            conn.execute(f"RELEASE {SAVEPOINT}")
            outcomes.append((False, exc))
        else:
            conn.execute(f"RELEASE {SAVEPOINT}")
            outcomes.append((True, value))
    return outcomes
