"""Named SQL of the SQLite backend, and the few queries that are built from filters.

Values are always bound parameters; only fixed fragments and placeholders are joined.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from genqueue.backends.base import JobQuery, day_of
from genqueue.backends.sqlite.rows import JOB_COLUMNS, SELECT_ENTRY, SELECT_JOB, row_to_entry
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, FingerprintGroup

PENDING = "('queued', 'scheduled', 'active', 'retrying')"

JOB_BY_ID = f"SELECT {SELECT_JOB} FROM jobs j WHERE j.id = ?"
PENDING_BY_KEY = (
    f"SELECT {SELECT_JOB} FROM jobs j "
    f"WHERE j.queue = ? AND j.idempotency_key = ? AND j.state IN {PENDING}"
)
COUNTS = "SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state"
OLDEST_READY = "SELECT queue, MIN(run_at) FROM jobs WHERE state = 'queued' GROUP BY queue"

PROMOTE = """
UPDATE jobs SET state = 'queued', updated_at = ?
WHERE seq IN (
    SELECT seq FROM jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= ?
    ORDER BY run_at LIMIT ?
)
"""

HEARTBEAT = """
UPDATE jobs SET lease_expires_at = ?
WHERE id = ? AND state = 'active' AND attempts = ? AND lease_expires_at > ?
"""

UPDATE_RUNNING = """
UPDATE jobs SET
    progress = COALESCE(?, progress),
    remote_job_id = COALESCE(?, remote_job_id),
    meta = json_patch(meta, ?),
    cost = COALESCE(?, cost),
    updated_at = ?
WHERE id = ? AND state = 'active' AND attempts = ? AND lease_expires_at > ?
"""

MOVE_WHERE = " WHERE id = ? AND state = ? AND attempts = ?"
MOVE_EXPIRED = " AND lease_expires_at <= ?"

EXPIRED = f"""
SELECT {SELECT_JOB} FROM jobs j
WHERE j.state = 'active' AND j.lease_expires_at <= ?
ORDER BY j.lease_expires_at LIMIT ?
"""

PURGE_FINISHED = """
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE state IN ('completed', 'cancelled') AND finished_at < ? LIMIT ?
)
"""
FINISHED_BY_QUEUE = """
SELECT queue, COUNT(*) FROM jobs WHERE state IN ('completed', 'cancelled') GROUP BY queue
"""
PURGE_OLDEST_OF_QUEUE = """
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE queue = ? AND state IN ('completed', 'cancelled')
    ORDER BY finished_at, seq LIMIT ?
)
"""


def purge_finished(
    conn: sqlite3.Connection, finished_before: float, limit: int, keep: int | None
) -> int:
    """Old finished jobs, then each queue's oldest beyond its newest ``keep``."""
    removed = int(conn.execute(PURGE_FINISHED, (finished_before, limit)).rowcount)
    if keep is None:
        return removed
    for queue, count in conn.execute(FINISHED_BY_QUEUE).fetchall():
        excess = min(int(count) - keep, limit - removed)
        if excess > 0:
            removed += int(conn.execute(PURGE_OLDEST_OF_QUEUE, (queue, excess)).rowcount)
    return removed


ENTRY_BY_ID = f"""
SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM dead_letters d JOIN jobs j ON j.id = d.job_id
WHERE d.job_id = ?
"""
LIST_ENTRIES = f"""
SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM dead_letters d JOIN jobs j ON j.id = d.job_id
{{where}} ORDER BY d.failed_at DESC, d.job_id DESC LIMIT ?
"""
COUNT_ENTRIES = "SELECT COUNT(*) FROM dead_letters d {where}"
DELETE_ENTRY = "DELETE FROM dead_letters WHERE job_id = ?"
DELETE_DEAD_JOB = "DELETE FROM jobs WHERE id = ? AND state = 'dead'"
EXPIRED_ENTRIES = (
    "SELECT job_id FROM dead_letters WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
)


def fetch_sql(queue_count: int) -> tuple[str, str]:
    """(is anything due?, claim a batch) for ``queue_count`` queues."""
    marks = ", ".join("?" for _ in range(queue_count))
    ready = (
        f"SELECT 1 FROM jobs WHERE state = 'queued' AND queue IN ({marks}) AND run_at <= ? LIMIT 1"
    )
    claim = f"""
UPDATE jobs SET state = 'active', attempts = attempts + 1, lease_owner = ?,
    lease_expires_at = ?, started_at = ?, updated_at = ?
WHERE seq IN (
    SELECT seq FROM jobs WHERE state = 'queued' AND queue IN ({marks}) AND run_at <= ?
    ORDER BY run_at, seq LIMIT ?
)
RETURNING {", ".join(JOB_COLUMNS)}
"""
    return ready, claim


DELAYED_DUE = "SELECT 1 FROM jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= ? LIMIT 1"


def work_due(conn: sqlite3.Connection, ready_sql: str, queues: Sequence[str], now: float) -> bool:
    """A cheap read before taking the write lock: idle workers must not contend for it."""
    if conn.execute(ready_sql, (*queues, now)).fetchone() is not None:
        return True
    return conn.execute(DELAYED_DUE, (now,)).fetchone() is not None


def list_jobs(query: JobQuery, after: tuple[float, str] | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("queue", query.queue), ("task", query.task), ("user_id", query.user_id)):
        if value is not None:
            clauses.append(f"j.{column} = ?")
            params.append(value)
    if query.states is not None:
        clauses.append(f"j.state IN ({', '.join('?' for _ in query.states)})")
        params.extend(sorted(s.value for s in query.states))
    if query.since is not None:
        clauses.append("j.created_at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("j.created_at < ?")
        params.append(query.until)
    if after is not None:
        clauses.append("(j.created_at, j.id) < (?, ?)")
        params.extend(after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {SELECT_JOB} FROM jobs j {where} ORDER BY j.created_at DESC, j.id DESC LIMIT ?"
    return sql, [*params, query.limit + 1]


def dlq_where(filter: DLQFilter, after: tuple[float, str] | None) -> tuple[str, list[Any]]:
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
            clauses.append(f"d.{column} = ?")
            params.append(value)
    if filter.since is not None:
        clauses.append("d.failed_at >= ?")
        params.append(filter.since)
    if filter.until is not None:
        clauses.append("d.failed_at < ?")
        params.append(filter.until)
    if after is not None:
        clauses.append("(d.failed_at, d.job_id) < (?, ?)")
        params.extend(after)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _grouped(
    conn: sqlite3.Connection, column: str, where: str, params: list[Any]
) -> dict[str, int]:
    sql = f"SELECT {column}, COUNT(*) c FROM dead_letters d {where} GROUP BY 1 ORDER BY c DESC, 1"
    return {str(k if k is not None else "(none)"): c for k, c in conn.execute(sql, params)}


def dlq_stats(conn: sqlite3.Connection, where: str, params: list[Any], top: int) -> DLQStats:
    total = conn.execute(f"SELECT COUNT(*) FROM dead_letters d {where}", params).fetchone()[0]
    days: dict[str, int] = {}
    for (failed_at,) in conn.execute(f"SELECT d.failed_at FROM dead_letters d {where}", params):
        day = day_of(failed_at)
        days[day] = days.get(day, 0) + 1
    groups = []
    fp_sql = (
        f"SELECT d.fingerprint, COUNT(*) c, MAX(d.job_id) FROM dead_letters d {where} "
        "GROUP BY d.fingerprint ORDER BY c DESC, d.fingerprint LIMIT ?"
    )
    for fingerprint, count, sample_id in conn.execute(fp_sql, (*params, top)).fetchall():
        sample = _entry(conn, sample_id)
        joiner = " AND" if where else " WHERE"
        tasks_sql = f"SELECT DISTINCT d.task FROM dead_letters d {where}{joiner} d.fingerprint = ?"
        tasks = sorted(r[0] for r in conn.execute(tasks_sql, (*params, fingerprint)))
        error = sample.job.last_error if sample else None
        groups.append(
            FingerprintGroup(
                fingerprint=fingerprint,
                count=count,
                error_kind=sample.error_kind.value if sample else "",
                error_type=error.type if error else "",
                sample_message=error.message if error else (sample.reason if sample else ""),
                tasks=tasks,
            )
        )
    cost_sql = (
        "SELECT c.key, SUM(c.value) FROM dead_letters d JOIN jobs j ON j.id = d.job_id, "
        f"json_each(j.cost) c {where} GROUP BY c.key"
    )
    cost = {k: round(v, 6) for k, v in conn.execute(cost_sql, params)}
    return DLQStats(
        total=total,
        by_kind=_grouped(conn, "d.error_kind", where, params),
        by_task=_grouped(conn, "d.task", where, params),
        by_user=_grouped(conn, "d.user_id", where, params),
        by_day=dict(sorted(days.items())),
        top_fingerprints=groups,
        cost_lost=cost,
    )


def _entry(conn: sqlite3.Connection, job_id: str) -> DeadLetter | None:
    row = conn.execute(ENTRY_BY_ID, (job_id,)).fetchone()
    return row_to_entry(row) if row else None
