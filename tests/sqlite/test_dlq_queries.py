"""The query plans of the DLQ page's queries on SQLite: a filter is served by its most
selective index, and fingerprint groups of many entries come from an index alone.

A bad plan is slow, not wrong, so it is the plan that is checked here (the timings are in
bench/service_load.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from genqueue import App, DLQFilter, ErrorKind
from genqueue.backends.sqlite import queries as q
from tests.conformance.helpers import make_dead


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[sqlite3.Connection]:
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}")
    async with app:
        for user in ("u1", "u2", "u3"):
            await make_dead(app, 20, user_id=user, kind=ErrorKind.AUTH, task="a", message="key")
            await make_dead(app, 5, user_id=user, kind=ErrorKind.SERVER, task="b", message="503")
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def plan(conn: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (DLQFilter(user_id="u1", error_kind="auth"), "dead_letters_user"),
        (DLQFilter(error_kind="auth", task="a", user_id="u1"), "dead_letters_user"),
        (DLQFilter(error_kind="auth", task="a"), "dead_letters_task"),
        (DLQFilter(error_kind="auth", queue="dlqtest"), "dead_letters_queue"),
        (DLQFilter(error_kind="auth"), "dead_letters_kind"),
    ],
)
def test_list_and_count_use_the_most_selective_index(
    db: sqlite3.Connection, flt: DLQFilter, index: str
) -> None:
    where, params = q.dlq_where(flt, None)
    listing = plan(db, q.LIST_ENTRIES.format(where=where), [*params, 51])
    assert f"INDEX {index} " in listing
    assert "TEMP B-TREE" not in listing  # the index gives the order: no sort
    assert f"INDEX {index} " in plan(db, q.COUNT_ENTRIES.format(where=where), params)


@pytest.mark.parametrize(
    ("flt", "covering"),
    [
        (DLQFilter(), True),
        (DLQFilter(error_kind="auth"), True),  # 60 of 75 entries
        (DLQFilter(task="b"), True),  # 15 of 75: still cheaper from the index
        (DLQFilter(user_id="u2"), False),
        (DLQFilter(error_kind="auth", since=0.0), False),  # failed_at is not in the index
    ],
)
def test_groups_of_many_entries_come_from_the_covering_index(
    db: sqlite3.Connection, flt: DLQFilter, covering: bool
) -> None:
    sql, params = q.groups_query(db, flt, 10)
    assert ("COVERING INDEX dead_letters_groups" in plan(db, sql, params)) is covering
    groups = q.dlq_groups(db, flt, 10)
    assert sum(g.count for g in groups) == q.dlq_stats(db, flt, 10).total


def test_search_reads_past_a_damaged_error_record(db: sqlite3.Connection) -> None:
    """A row whose last error is not JSON (written by someone else) cannot be searched by
    its message, and does not stop the search of the others."""
    damaged = db.execute("SELECT job_id FROM dead_letters WHERE user_id = 'u1' LIMIT 1")
    (job_id,) = damaged.fetchone()
    db.execute("UPDATE jobs SET last_error = '{not json' WHERE id = ?", (job_id,))
    db.commit()
    found = q.dlq_search(db, DLQFilter(user_id="u1"), "KEY", None, limit=100, scan=1000)
    assert len(found.items) == 19 and found.scanned == 25
    assert job_id not in {e.job_id for e in found.items}
