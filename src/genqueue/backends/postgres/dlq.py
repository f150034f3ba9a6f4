"""The dead letter queue on PostgreSQL: lookups, filtered pages, counts, statistics, and
deletion of entries with their dead jobs.

An entry is a row of ``dead_letters`` (the fields it is filtered on, each with an index
ordered like the listing: newest first) joined to its job's row. Filters become a WHERE
clause of bound values; statistics are GROUP BY queries over the matching entries, so no
entry is read into Python except the sample of each top fingerprint. Deleting an entry
deletes its dead job in the same statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genqueue.backends.base import day_of
from genqueue.backends.postgres.connection import Conn, fetch_all, fetch_one
from genqueue.backends.postgres.queries import NOW, SELECT_ENTRY, SELECT_JOB, window
from genqueue.backends.sqlite.rows import row_to_entry
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, FingerprintGroup

_ENTRY_JOIN = (
    f"SELECT {SELECT_ENTRY}, {SELECT_JOB} "
    "FROM {s}.dead_letters d JOIN {s}.jobs j ON j.id = d.job_id"
)


class DLQQueries:
    """The DLQ's statements for one schema."""

    def __init__(self, s: str) -> None:
        self.s = s
        join = _ENTRY_JOIN.format(s=s)
        self.by_id = f"{join} WHERE d.job_id = %s"
        self.page = join + " {where} ORDER BY d.failed_at DESC, d.job_id DESC LIMIT %s"
        self.count = f"SELECT count(*) FROM {s}.dead_letters d {{where}}"
        self.delete = f"""
WITH d AS (DELETE FROM {s}.dead_letters WHERE job_id = ANY(%s) RETURNING job_id),
j AS (DELETE FROM {s}.jobs WHERE id IN (SELECT job_id FROM d) AND state = 'dead')
SELECT job_id FROM d
"""
        self.expire = f"""
WITH doomed AS (
    SELECT job_id, expires_at FROM {s}.dead_letters WHERE expires_at <= {NOW}
    ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
),
d AS (
    DELETE FROM {s}.dead_letters WHERE job_id IN (SELECT job_id FROM doomed)
    RETURNING job_id, expires_at
),
j AS (DELETE FROM {s}.jobs WHERE id IN (SELECT job_id FROM d) AND state = 'dead')
SELECT job_id FROM d ORDER BY expires_at, job_id
"""


def where(filter: DLQFilter, after: tuple[float, str] | None) -> tuple[str, list[Any]]:
    """A WHERE clause (or '') over ``dead_letters d`` and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    equals = (
        ("queue", filter.queue),
        ("user_id", filter.user_id),
        ("error_kind", filter.error_kind.value if filter.error_kind else None),
        ("task", filter.task),
        ("fingerprint", filter.fingerprint),
    )
    for column, value in equals:
        if value is not None:
            clauses.append(f"d.{column} = %s")
            params.append(value)
    window(clauses, params, ("d.failed_at", "d.job_id"), (filter.since, filter.until), after)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


async def entries(
    conn: Conn, q: DLQQueries, clause: str, params: list[Any], limit: int
) -> list[DeadLetter]:
    rows = await fetch_all(conn, q.page.format(where=clause), (*params, limit))
    return [row_to_entry(row) for row in rows]


async def get(conn: Conn, q: DLQQueries, job_id: str) -> DeadLetter | None:
    row = await fetch_one(conn, q.by_id, (job_id,))
    return row_to_entry(row) if row else None


async def count(conn: Conn, q: DLQQueries, clause: str, params: list[Any]) -> int:
    row = await fetch_one(conn, q.count.format(where=clause), params)
    return int(row[0]) if row else 0


async def delete(conn: Conn, q: DLQQueries, job_ids: Sequence[str]) -> list[str]:
    found = {str(r[0]) for r in await fetch_all(conn, q.delete, (list(job_ids),))}
    return [job_id for job_id in dict.fromkeys(job_ids) if job_id in found]


async def expire(conn: Conn, q: DLQQueries, now: float | None, limit: int) -> list[str]:
    rows = await fetch_all(conn, q.expire, {"now": now, "limit": limit})
    return [str(r[0]) for r in rows]


async def _grouped(
    conn: Conn, s: str, column: str, clause: str, params: list[Any]
) -> dict[str, int]:
    sql = (
        f"SELECT {column}, count(*) c FROM {s}.dead_letters d {clause} "
        "GROUP BY 1 ORDER BY c DESC, 1"
    )
    rows = await fetch_all(conn, sql, params)
    return {str(k if k is not None else "(none)"): int(c) for k, c in rows}


async def stats(conn: Conn, q: DLQQueries, clause: str, params: list[Any], top: int) -> DLQStats:
    s = q.s
    total = await count(conn, q, clause, params)
    days: dict[str, int] = {}
    day_sql = (
        f"SELECT floor(d.failed_at / 86400)::bigint, count(*) FROM {s}.dead_letters d "
        f"{clause} GROUP BY 1 ORDER BY 1"
    )
    for day, n in await fetch_all(conn, day_sql, params):
        days[day_of(int(day) * 86400)] = int(n)
    cost_sql = (
        "SELECT c.key, sum(c.value::float8) FROM "
        f"{s}.dead_letters d JOIN {s}.jobs j ON j.id = d.job_id "
        f"CROSS JOIN LATERAL jsonb_each_text(j.cost::jsonb) c {clause} GROUP BY c.key"
    )
    cost = {str(k): round(float(v), 6) for k, v in await fetch_all(conn, cost_sql, params)}
    return DLQStats(
        total=total,
        by_kind=await _grouped(conn, s, "d.error_kind", clause, params),
        by_task=await _grouped(conn, s, "d.task", clause, params),
        by_user=await _grouped(conn, s, "d.user_id", clause, params),
        by_day=days,
        top_fingerprints=await _top(conn, q, clause, params, top),
        cost_lost=cost,
    )


async def _top(
    conn: Conn, q: DLQQueries, clause: str, params: list[Any], top: int
) -> list[FingerprintGroup]:
    """The ``top`` fingerprints by count, each with its tasks and a sample entry."""
    sql = (
        "SELECT d.fingerprint, count(*) c, max(d.job_id), "
        "array_agg(DISTINCT d.task ORDER BY d.task) "
        f"FROM {q.s}.dead_letters d {clause} "
        "GROUP BY d.fingerprint ORDER BY c DESC, d.fingerprint LIMIT %s"
    )
    groups = []
    for fingerprint, n, sample_id, tasks in await fetch_all(conn, sql, (*params, top)):
        sample = await get(conn, q, str(sample_id))
        tasks_of = [str(t) for t in tasks]
        groups.append(FingerprintGroup.from_sample(str(fingerprint), int(n), tasks_of, sample))
    return groups
