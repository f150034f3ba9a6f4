"""A SQLite DLQ filter on two or more fields uses the index of its rarest value, by the
counters the triggers keep; a value no entry has matches nothing without a scan."""

from __future__ import annotations

from pathlib import Path

from genqueue import App, DLQFilter, FakeClock
from genqueue.backends.sqlite import queries as q
from genqueue.backends.sqlite.counted import rarest_column
from genqueue.backends.sqlite.schema import connect
from tests.conformance.helpers import make_dead


async def test_the_rarest_value_picks_the_index(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    app = App(f"sqlite:///{path}", clock=FakeClock())
    async with app:
        await make_dead(app, 30, user_id="ann", task="busy", queue="q1")
        rare = await make_dead(app, 2, user_id="ann", task="rare", queue="q2", offset=5)
        await make_dead(app, 3, user_id="bob", task="rare", queue="q2", offset=9)
        conn = connect(str(path))
        assert rarest_column(conn, DLQFilter(user_id="ann", task="rare")) == "task"  # 5 < 32
        assert rarest_column(conn, DLQFilter(user_id="bob", task="rare")) == "user_id"
        assert rarest_column(conn, DLQFilter(user_id="ann", task="busy", queue="q2")) is None
        assert rarest_column(conn, DLQFilter(user_id="ann", task="none")) is None
        assert rarest_column(conn, DLQFilter(user_id="ann", queue="q1")) == ""  # one field
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
        assert all("+d.user_id = 'ann' AND d.task = 'rare'" in s for s in filtered)
        assert run(DLQFilter(user_id="ann", task="none")) == (0, 0, 0)
        reads = [s for s in statements if "FROM dead_letters d" in s]
        assert len(reads) >= 5 and all("WHERE 0" in s for s in reads)
        conn.close()
