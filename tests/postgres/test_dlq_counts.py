"""DLQ statistics on PostgreSQL come from counters kept by a trigger; they equal a scan of
the entries, also for entries stored before the counters existed (migration 0005)."""

from __future__ import annotations

import psycopg

from genqueue import App, DLQFilter, ErrorKind, FakeClock
from genqueue.backends.base import Backend
from genqueue.backends.postgres.options import PostgresOptions
from tests.conformance.helpers import make_dead
from tests.postgres_server import postgres_url_for_test, require_postgres
from tests.redis.test_dlq_stats import dead_with_cost


async def _same_as_a_scan(app: App) -> None:
    for flt in (DLQFilter(), DLQFilter(queue="dlqtest"), DLQFilter(queue="images")):
        assert await app.dlq.stats(flt) == await Backend.dlq_stats(app.backend, flt), flt


async def _fill(app: App) -> list[str]:
    await make_dead(app, 4, user_id="ann", kind=ErrorKind.AUTH, task="a", message="bad key")
    await make_dead(app, 3, user_id=None, task="b", message="HTTP 503", offset=2 * 86400)
    await dead_with_cost(app, queue="images", cost={"usd": 0.25, "credits": 3})
    await dead_with_cost(app, queue="images", cost={"usd": 0.5})
    return await make_dead(app, 2, user_id="gone", message="deleted later")


async def test_counters_follow_every_change(pg_url: str) -> None:
    app = App(pg_url, clock=FakeClock())
    async with app:
        doomed = await _fill(app)
        await _same_as_a_scan(app)
        await app.dlq.delete_many(doomed)
        await _same_as_a_scan(app)
        stats = await app.dlq.stats()
        assert stats.total == 9 and stats.cost_lost == {"usd": 0.75, "credits": 3.0}
        assert stats.by_user == {"ann": 4, "(none)": 5}
        first = (await app.dlq.list(DLQFilter(queue="images"))).items[0]
        await app.dlq.redrive(first.job_id)
        await _same_as_a_scan(app)
        await app.dlq.purge()
        assert await app.dlq.stats() == await Backend.dlq_stats(app.backend, DLQFilter())


async def test_entries_stored_before_the_counters_are_counted() -> None:
    url = postgres_url_for_test("old")
    name = PostgresOptions.from_url(url).schema
    app = App(url, clock=FakeClock())
    async with (
        app,
        await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn,
    ):
        await conn.execute(f'ALTER TABLE "{name}".dead_letters DISABLE TRIGGER USER')
        await _fill(app)  # stored without counting, as before 0005
        # Back to version 4: 0005's objects and record gone, the entries kept.
        await conn.execute(f'DROP FUNCTION "{name}".genqueue_dlq_count() CASCADE')
        await conn.execute(f'DROP FUNCTION "{name}".genqueue_dlq_names')
        await conn.execute(f'DROP FUNCTION "{name}".genqueue_dlq_rollup()')
        for table in ("dlq_counts", "dlq_count_deltas", "dlq_entry_costs"):
            await conn.execute(f'DROP TABLE "{name}".{table}')
        await conn.execute(f'DELETE FROM "{name}".genqueue_migrations WHERE version = 5')
        await conn.execute(f'ALTER TABLE "{name}".dead_letters ENABLE TRIGGER USER')
    app = App(url, clock=FakeClock())
    async with app:  # 0005 again, over stored entries: it counts them
        await _same_as_a_scan(app)
        assert (await app.dlq.stats()).total == 11
