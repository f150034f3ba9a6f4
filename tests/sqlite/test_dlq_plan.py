"""A SQLite DLQ filter on two or more fields uses the index of its rarest value, by the
counters the triggers keep; a value no entry has matches nothing without a scan."""

from __future__ import annotations

from pathlib import Path

from genqueue import App, DLQFilter, FakeClock
from genqueue.backends.sqlite import counted
from genqueue.backends.sqlite import queries as q
from genqueue.backends.sqlite.counted import columns_by_rarity
from genqueue.backends.sqlite.schema import connect, migrate
from tests.conformance.helpers import make_dead


async def test_the_rarest_value_picks_the_index(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}", clock=FakeClock())
    async with app:
        await make_dead(app, 30, user_id="ann", task="busy", queue="q1")
        rare = await make_dead(app, 2, user_id="ann", task="rare", queue="q2", offset=5)
        await make_dead(app, 3, user_id="bob", task="rare", queue="q2", offset=9)
        conn = connect(str(path))
        order = columns_by_rarity
        assert order(conn, DLQFilter(user_id="ann", task="rare")) == ["task", "user_id"]  # 5 < 32
        assert order(conn, DLQFilter(user_id="bob", task="rare")) == ["user_id", "task"]
        assert order(conn, DLQFilter(user_id="ann", task="busy", queue="q2")) is None
        assert order(conn, DLQFilter(user_id="ann", task="none")) is None
        assert order(conn, DLQFilter(user_id="ann", queue="q1")) == []  # one field
        conn.close()
        wanted = DLQFilter(user_id="ann", task="rare")
        assert sorted(e.job_id for e in (await app.dlq.list(wanted)).items) == sorted(rare)
        assert await app.dlq.count(wanted) == 2
        assert (await app.dlq.list(DLQFilter(user_id="ann", task="none"))).items == []
        assert await app.dlq.count(DLQFilter(user_id="ann", task="busy", queue="q2")) == 0


async def test_stats_groups_and_search_use_the_same_plan(tmp_path: Path) -> None:
    """Filtered stats, fingerprint groups and search read through the rarest value's
    index as pages do, and a value no entry has makes them read nothing (``WHERE 0``)."""
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}", clock=FakeClock())
    async with app:
        await make_dead(app, 30, user_id="ann", task="busy")
        await make_dead(app, 2, user_id="ann", task="rare", message="disk full", offset=5)
        conn = connect(str(path))
        statements: list[str] = []
        conn.set_trace_callback(statements.append)

        def run(wanted: DLQFilter) -> tuple[int, int, int]:
            statements.clear()
            stats = q.dlq_stats(conn, wanted, 5)
            search = q.dlq_search(conn, wanted, "disk", None, limit=10, scan=100)
            return stats.total, len(stats.top_fingerprints), len(search.items)

        assert run(DLQFilter(user_id="ann", task="rare")) == (2, 1, 2)
        filtered = [s for s in statements if "user_id = 'ann'" in s]
        assert len(filtered) >= 5  # stats' total, kinds, tasks, users, days, cost; groups
        assert all("WHERE d.task = 'rare' AND +d.user_id = 'ann'" in s for s in filtered)
        assert run(DLQFilter(user_id="ann", task="none")) == (0, 0, 0)
        reads = [s for s in statements if "FROM dead_letters d" in s]
        assert len(reads) >= 5 and all("WHERE 0" in s for s in reads)
        conn.close()


async def test_pages_and_counts_of_two_fields_read_only_indexes_until_they_match(
    tmp_path: Path,
) -> None:
    """A page or count of two or more fields walks the rarest value's index and tests the
    other values in their own indexes, rarest first: no entry's row is read unless it
    matches (the plan says COVERING INDEX), and pages still go newest first."""
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}", clock=FakeClock())
    async with app:
        await make_dead(app, 40, user_id="ann", task="busy")
        rare = await make_dead(app, 3, user_id="ann", task="rare", offset=5, step=7)
        await make_dead(app, 20, user_id="bob", task="rare", offset=9)
        await make_dead(app, 30, user_id="cid", task="other", queue="q2")
        conn = connect(str(path))
        wanted = DLQFilter(user_id="ann", task="rare", queue="dlqtest")
        where, params = q.planned_where(conn, wanted, None, probe=True)
        assert where.startswith("WHERE d.task = ? AND EXISTS")  # rare (23) < ann (43)
        assert where.index("dead_letters_user") < where.index("dead_letters_queue")  # 43 < 103
        inner = f"SELECT d.failed_at, d.job_id FROM dead_letters d {where}"
        plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {inner}", params)]
        assert plan[0] == "SEARCH d USING COVERING INDEX dead_letters_task (task=?)"
        rows = q.dlq_page_rows(conn, wanted, None, 2)
        assert [r[0] for r in rows] == [rare[2], rare[1]]
        after = (float(rows[-1][7]), rows[-1][0])
        assert [r[0] for r in q.dlq_page_rows(conn, wanted, after, 2)] == [rare[0]]
        assert q.dlq_count(conn, wanted) == 3
        conn.close()


def test_counters_of_a_few_values_are_looked_up_not_scanned(tmp_path: Path) -> None:
    """Choosing the index reads the counters of the filter's values in each queue by key;
    a plain ``name IN`` would read every counter (one per user per queue)."""
    conn = connect(str(tmp_path / "dlq.db"))
    migrate(conn)
    rows = [(f"q{q}", f"u:user-{u}", 2.0) for q in range(3) for u in range(500)]
    conn.executemany("INSERT INTO dlq_counts VALUES (?, ?, ?)", [*rows, ("q1", "t:rare", 1.0)])
    sql = counted._VALUE_COUNTS.format(marks="?, ?")
    plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("a", "b"))]
    assert not any(step.startswith("SCAN dlq_counts") for step in plan), plan
    order = columns_by_rarity(conn, DLQFilter(user_id="user-7", task="rare"))
    assert order == ["task", "user_id"]  # 1 < 6, summed over the three queues
    conn.close()
