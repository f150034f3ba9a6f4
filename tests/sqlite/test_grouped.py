"""Group commit of the SQLite backend's enqueues: concurrent enqueues share one
transaction, and each stays all-or-nothing on its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, IdempotencyConflict, JobState
from genqueue.backends.sqlite import SQLiteBackend
from genqueue.backends.sqlite.grouped import GroupedWrites


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    app = App(f"sqlite:///{tmp_path / 'g.db'}")

    @app.task("t")
    async def t(ctx: Any) -> None:
        raise AssertionError("never runs")

    async with app:
        yield app


def transactions(app: App) -> int:
    backend = app.backend
    assert isinstance(backend, SQLiteBackend)
    return backend._enqueues.transactions


async def test_concurrent_enqueues_share_a_transaction(app: App) -> None:
    before = transactions(app)
    jobs = await asyncio.gather(*(app.enqueue("t", {"i": i}) for i in range(50)))
    assert transactions(app) - before < 50
    assert len({j.id for j in jobs}) == 50
    stored = await app.queue.list(state=JobState.QUEUED, limit=100)
    assert {j.id for j in stored.items} == {j.id for j in jobs}


async def test_a_failing_enqueue_leaves_the_others_of_its_group_stored(app: App) -> None:
    first = await app.enqueue("t", {"v": 1}, idempotency_key="k")
    before = transactions(app)
    results = await asyncio.gather(
        app.enqueue("t", {"n": "before"}),
        app.enqueue("t", {"v": 2}, idempotency_key="k"),  # another job holds the key
        app.enqueue("t", {"n": "after"}),
        return_exceptions=True,
    )
    assert transactions(app) - before == 1  # one group
    before_job, conflict, after_job = results
    assert isinstance(conflict, IdempotencyConflict)
    stored = await app.queue.list(limit=10)
    assert sorted(j.id for j in stored.items) == sorted(
        [first.id, before_job.id, after_job.id]  # type: ignore[union-attr]
    )


def _writer(conn: sqlite3.Connection) -> Callable[[Any], Any]:
    """A ``_write`` stand-in: the function in one transaction, synchronously."""

    async def write(fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    return write


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    return conn


def _insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        return value

    return run


async def test_an_error_that_ends_the_transaction_fails_the_whole_group() -> None:
    conn = _table()
    grouped = GroupedWrites(_writer(conn))

    def abort(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("ROLLBACK")  # as SQLite does itself on some errors (disk full, ...)
        raise sqlite3.OperationalError("database or disk is full")

    results = await asyncio.gather(
        grouped.submit(_insert(1)),
        grouped.submit(abort),
        grouped.submit(_insert(3)),
        return_exceptions=True,
    )
    assert [str(r) for r in results] == ["database or disk is full"] * 3
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


async def test_a_caller_cancelled_before_its_group_is_left_out() -> None:
    conn = _table()
    grouped = GroupedWrites(_writer(conn))
    kept = asyncio.ensure_future(grouped.submit(_insert(1)))
    dropped = asyncio.ensure_future(grouped.submit(_insert(2)))
    await asyncio.sleep(0)  # both are pending; the group has not been written yet
    dropped.cancel()
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
