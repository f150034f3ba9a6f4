"""Dead letters on SQLite are stored compact (stacks once, history packed), counted by
triggers for stats, and entries stored before migration 0006 stay readable and counted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from genqueue import App, DLQFilter, ErrorKind, FakeClock
from genqueue.backends.base import Backend, JobQuery, day_of
from genqueue.backends.sqlite import queries as q
from genqueue.backends.sqlite.rows import (
    ENTRY_COLUMNS,
    INSERT_JOB,
    JOB_COLUMNS,
    entry_values,
    job_values,
)
from genqueue.backends.sqlite.schema import connect, migrate
from genqueue.classify import ClassifiedError
from genqueue.entry import DeadLetter
from genqueue.job import Attempt, AttemptOutcome, Job, JobState
from tests.conformance.helpers import make_dead


async def test_dead_rows_are_compact_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}", clock=FakeClock())
    async with app:
        ids = await make_dead(app, 20, message="upstream 500")
        db = sqlite3.connect(path)
        history = db.execute("SELECT history FROM jobs WHERE id = ?", (ids[0],)).fetchone()[0]
        assert isinstance(history, bytes) and b"Traceback" not in history
        assert db.execute("SELECT refs, stack FROM dlq_stacks").fetchall() == [(20, "Traceback...")]
        entry = await app.dlq.get(ids[0])
        assert entry.job.last_error is not None and entry.job.last_error.stack == "Traceback..."
        assert all(a.error and a.error.stack == "Traceback..." for a in entry.history)
        assert (await app.backend.get(ids[0])) == entry.job
        stats = await app.dlq.stats()
        assert stats == await Backend.dlq_stats(app.backend, DLQFilter())
        await app.dlq.delete_many(ids)
        assert db.execute("SELECT count(*) FROM dlq_stacks").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM dlq_counts").fetchone()[0] == 0
        db.close()


async def test_a_page_of_dead_jobs_gets_each_its_own_stacks(tmp_path: Path) -> None:
    """The stacks of a page's dead jobs are looked up once per page and shared: each job
    still gets its own."""
    app = App(f"sqlite:///{tmp_path / 'dlq.db'}", clock=FakeClock())
    async with app:
        first = await make_dead(app, 3, stack="Traceback (first)")
        second = await make_dead(app, 3, stack="Traceback (second)", offset=10)
        third = await make_dead(app, 2, stack="Traceback (first)", offset=20)
        page = await app.dlq.list(limit=100)
        stacks = {e.job_id: e.job.last_error.stack for e in page.items if e.job.last_error}
        assert stacks == {
            **dict.fromkeys([*first, *third], "Traceback (first)"),
            **dict.fromkeys(second, "Traceback (second)"),
        }
        jobs = (await app.backend.list_jobs(JobQuery(states={JobState.DEAD}))).items
        assert {j.id: j.history[-1].error.stack for j in jobs if j.history[-1].error} == stacks


def _old_dead(i: int, user: str | None, kind: ErrorKind, cost: dict[str, float]) -> DeadLetter:
    error = ClassifiedError(kind, False, f"boom {i}", "RuntimeError", stack="Traceback (old)")
    at = 1_800_000_000.0 + i * 3600
    job = Job(
        id=f"{i:032x}",
        task="t" if i % 2 else "u",
        created_at=at - 10,
        run_at=at - 10,
        queue="old",
        user_id=user,
        state=JobState.DEAD,
        attempts=1,
        last_error=error,
        history=[Attempt(1, at - 5, at, "w", AttemptOutcome.DEAD, error=error)],
        cost=cost,
        finished_at=at,
    )
    return DeadLetter(job, "not retryable", kind, at, error.fingerprint, at + 7 * 86400)


async def test_entries_stored_before_0006_are_counted_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(str(path))
    migrate(conn, target=5)
    old = [
        _old_dead(
            i,
            "ann" if i % 3 else None,
            ErrorKind.AUTH if i % 2 else ErrorKind.SERVER,
            {"usd": 0.5} if i % 4 == 0 else {},
        )
        for i in range(12)
    ]
    # The jobs table as of version 5: no expires_at yet (migration 0007).
    columns = [c for c in JOB_COLUMNS if c != "expires_at"]
    insert_v5 = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for entry in old:
        values = dict(zip(JOB_COLUMNS, job_values(entry.job), strict=True))
        conn.execute(insert_v5, [values[c] for c in columns])
        marks = ", ".join("?" for _ in ENTRY_COLUMNS)
        conn.execute(
            f"INSERT INTO dead_letters ({', '.join(ENTRY_COLUMNS)}) VALUES ({marks})",
            entry_values(entry),
        )
    conn.close()
    app = App(f"sqlite:///{path}", clock=FakeClock(1_800_000_000.0 + 86400))
    async with app:
        backend = app.backend
        stats = await app.dlq.stats()
        assert stats == await Backend.dlq_stats(backend, DLQFilter())
        assert stats.total == 12 and stats.cost_lost == {"usd": 1.5}
        assert stats.by_user == {"ann": 8, "(none)": 4}
        queue_stats = await app.dlq.stats(DLQFilter(queue="old"))
        assert queue_stats == await Backend.dlq_stats(backend, DLQFilter(queue="old"))
        got = await app.dlq.get(old[0].job_id)
        assert got.job == old[0].job and got.to_public() == old[0].to_public()
        redriven = await app.dlq.redrive(old[1].job_id)
        assert redriven.last_error is not None
        assert redriven.last_error.stack == "Traceback (old)"
        await app.dlq.delete_many([e.job_id for e in old[2:8]])
        after = await app.dlq.stats()
        assert after == await Backend.dlq_stats(backend, DLQFilter()) and after.total == 5
        await app.dlq.purge()
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM dlq_counts").fetchone()[0] == 0
        db.close()


def test_triggers_count_an_entry_and_forget_it(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "c.db"))
    migrate(conn)
    entry = _old_dead(1, None, ErrorKind.AUTH, {"usd": 0.25})
    conn.execute(INSERT_JOB, job_values(entry.job))
    conn.execute(q.ADD_STACK, ("k1", "Traceback"))
    conn.execute(q.INSERT_ENTRY, (*entry_values(entry), '["k1"]'))
    fp = entry.fingerprint
    assert dict(conn.execute("SELECT name, value FROM dlq_counts").fetchall()) == {
        "n": 1.0,
        "k:auth": 1.0,
        "t:t": 1.0,
        "u": 1.0,
        f"f:{fp}": 1.0,
        f'ft:["{fp}","t"]': 1.0,
        f"d:{day_of(entry.failed_at)}": 1.0,
        "c:usd": 0.25,
    }
    assert conn.execute("SELECT refs FROM dlq_stacks").fetchall() == [(1,)]
    conn.execute(q.DELETE_ENTRY, (entry.job_id,))
    assert conn.execute("SELECT count(*) FROM dlq_counts").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM dlq_stacks").fetchone()[0] == 0
    conn.close()
