"""DLQ statistics of the PostgreSQL backend from the counters of migration 0005.

A trigger on ``dead_letters`` appends each entry's changes to ``dlq_count_deltas`` in the
transaction that adds or drops it; ``genqueue_dlq_rollup()`` folds them into
``dlq_counts``. Statistics of the whole DLQ (or of one queue) fold, then read a few
hundred counter rows instead of every entry; only the sample of each top fingerprint
(its newest entry) is read. Figures and their order are those of the grouping queries
(``dlq.stats``): most first, ties by value (no user last). Filtered statistics stay
queries over the matching entries.
"""

from __future__ import annotations

from genqueue.backends import dlqcounts
from genqueue.backends.base import day_of
from genqueue.backends.postgres.connection import Conn, fetch_all, fetch_one
from genqueue.backends.postgres.queries import SELECT_ENTRY, SELECT_JOB
from genqueue.backends.sqlite.rows import row_to_entry
from genqueue.entry import DLQStats, FingerprintGroup


class CountQueries:
    def __init__(self, s: str) -> None:
        self.rollup = f"SELECT {s}.genqueue_dlq_rollup()"
        self.counts = f"SELECT name, sum(value) FROM {s}.dlq_counts {{where}} GROUP BY name"
        self.newest = (
            f"SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM {s}.dead_letters d "
            f"JOIN {s}.jobs j ON j.id = d.job_id WHERE d.fingerprint = %s {{queue}} "
            "ORDER BY d.failed_at DESC, d.job_id DESC LIMIT 1"
        )


async def stats(conn: Conn, q: CountQueries, queue: str | None, top: int) -> DLQStats:
    await fetch_all(conn, q.rollup, ())
    where, params = ("WHERE queue = %s", [queue]) if queue is not None else ("", [])
    counters = dlqcounts.fold(await fetch_all(conn, q.counts.format(where=where), params))
    groups = [await _group(conn, q, queue, found) for found in counters.top_fingerprints(top)]
    return dlqcounts.to_stats(
        counters, groups, day=lambda key: day_of(int(key) * 86400), none_first=False
    )


async def _group(
    conn: Conn, q: CountQueries, queue: str | None, found: tuple[str, int, list[str]]
) -> FingerprintGroup:
    fingerprint, count, tasks = found
    sql = q.newest.format(queue="AND d.queue = %s" if queue is not None else "")
    row = await fetch_one(conn, sql, [fingerprint] if queue is None else [fingerprint, queue])
    sample = row_to_entry(row) if row else None
    return FingerprintGroup.from_sample(fingerprint, count, tasks, sample)
