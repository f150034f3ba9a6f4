"""Named SQL of the SQLite backend, the queries built from filters, and the few functions
that run several statements (enqueue with idempotency keys, DLQ groups and text search).

Values are always bound parameters; only fixed fragments and placeholders are joined.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from genqueue.backends.base import JobQuery, check_same_data, gone_at_finish
from genqueue.backends.sqlite.counted import columns_by_rarity, counted_stats
from genqueue.backends.sqlite.rows import (
    ENTRY_COLUMNS,
    INSERT_JOB,
    JOB_COLUMNS,
    SELECT_ENTRY,
    SELECT_JOB,
    UPDATE_JOB,
    MoveValues,
    row_to_entry,
    row_to_job,
    stacks_of,
)
from genqueue.entry import (
    DeadLetter,
    DLQFilter,
    DLQStats,
    FingerprintGroup,
    SearchPage,
    decode_cursor,
    encode_cursor,
)
from genqueue.errors import InvalidInput
from genqueue.job import Job, JobState

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

PURGE_EXPIRED = """
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE state IN ('completed', 'cancelled') AND expires_at <= ?
    ORDER BY expires_at LIMIT ?
)
"""
# Jobs finished before expiries were stored (migration 0007) go by their age.
PURGE_UNEXPIRING = """
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE state IN ('completed', 'cancelled') AND expires_at IS NULL
        AND finished_at < ? LIMIT ?
)
"""
# The queues that have finished jobs, one index seek each (a skip scan), and how many
# each has counted no further than ``keep + limit``: counting every finished job of a big
# queue for each batch of a purge held the write lock for seconds (bench/soak.py).
QUEUES_WITH_FINISHED = """
WITH RECURSIVE q(name) AS (
    SELECT (SELECT MIN(queue) FROM jobs INDEXED BY jobs_expiring_queue
            WHERE state IN ('completed', 'cancelled'))
    UNION ALL
    SELECT (SELECT MIN(queue) FROM jobs INDEXED BY jobs_expiring_queue
            WHERE state IN ('completed', 'cancelled') AND queue > q.name)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
"""
FINISHED_OF_QUEUE_UP_TO = """
SELECT COUNT(*) FROM (
    SELECT 1 FROM jobs WHERE queue = ? AND state IN ('completed', 'cancelled') LIMIT ?
)
"""
PURGE_FIRST_TO_EXPIRE_OF_QUEUE = """
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE queue = ? AND state IN ('completed', 'cancelled')
    ORDER BY expires_at, seq LIMIT ?
)
"""
# The job a move finished, when it expires as it finishes (base.gone_at_finish).
DELETE_JOB = "DELETE FROM jobs WHERE id = ?"


def purge_finished(
    conn: sqlite3.Connection, now: float, finished_before: float, limit: int, keep: int | None
) -> int:
    """Expired finished jobs, then each queue's first to expire beyond ``keep``."""
    removed = int(conn.execute(PURGE_EXPIRED, (now, limit)).rowcount)
    if removed < limit:
        removed += int(conn.execute(PURGE_UNEXPIRING, (finished_before, limit - removed)).rowcount)
    if keep is None:
        return removed
    for (queue,) in conn.execute(QUEUES_WITH_FINISHED).fetchall():
        if removed >= limit:
            break
        count = conn.execute(FINISHED_OF_QUEUE_UP_TO, (queue, keep + limit)).fetchone()[0]
        excess = min(int(count) - keep, limit - removed)
        if excess > 0:
            sql = PURGE_FIRST_TO_EXPIRE_OF_QUEUE
            removed += int(conn.execute(sql, (queue, excess)).rowcount)
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
#: A new entry with its stacks' keys (the triggers of 0006 count it and its stacks).
INSERT_ENTRY = (
    f"INSERT INTO dead_letters ({', '.join(ENTRY_COLUMNS)}, stacks) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)}, ?)"
)
#: A stack a new entry refers to (its count is raised by the entry's insert trigger).
ADD_STACK = "INSERT OR IGNORE INTO dlq_stacks (key, stack, refs) VALUES (?, ?, 0)"
DELETE_DEAD_JOB = "DELETE FROM jobs WHERE id = ? AND state = 'dead'"
EXPIRED_ENTRIES = (
    "SELECT job_id FROM dead_letters WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
)


def insert_jobs(
    conn: sqlite3.Connection, jobs: Sequence[Job], rows: list[tuple[Any, ...]]
) -> list[Job]:
    """Store new jobs; a job whose idempotency key a pending job of its queue holds
    returns that job instead (or raises ``IdempotencyConflict`` for other data, which
    rolls back the whole call)."""
    if not any(job.idempotency_key for job in jobs):
        try:
            conn.executemany(INSERT_JOB, rows)
        except sqlite3.IntegrityError as exc:
            raise InvalidInput(
                f"a job with one of these ids already exists: {exc}", field="id"
            ) from exc
        return list(jobs)
    out: list[Job] = []
    for job, row in zip(jobs, rows, strict=True):
        existing = None
        if job.idempotency_key:
            found = conn.execute(PENDING_BY_KEY, (job.queue, job.idempotency_key)).fetchone()
            existing = row_to_job(found) if found else None
        if existing is None:
            conn.execute(INSERT_JOB, row)
            out.append(job)
        else:
            out.append(check_same_data(job, existing))
    return out


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


#: Equality filters from the most to the least selective, as entries usually spread: many
#: users, fewer fingerprints, a few tasks and queues, a dozen error kinds.
_BY_SELECTIVITY = ("user_id", "fingerprint", "task", "queue", "error_kind")
#: The index of each filtered column (0001_init.sql): (column, failed_at, job_id).
_INDEX_OF = {
    "user_id": "dead_letters_user",
    "fingerprint": "dead_letters_fingerprint",
    "task": "dead_letters_task",
    "queue": "dead_letters_queue",
    "error_kind": "dead_letters_kind",
}
#: An entry has a value when that column's index holds (value, its failed_at, its id):
#: tested in the index alone, without reading the entry's row.
_PROBE = (
    "EXISTS (SELECT 1 FROM dead_letters p INDEXED BY {index} "
    "WHERE p.{column} = ? AND p.failed_at = d.failed_at AND p.job_id = d.job_id)"
)


def dlq_where(
    filter: DLQFilter,
    after: tuple[float, str] | None,
    *,
    indexable: Sequence[str] = _BY_SELECTIVITY,
    probe: bool = False,
    order: Sequence[str] = _BY_SELECTIVITY,
) -> tuple[str, list[Any]]:
    """The WHERE clause of a DLQ filter. Only the most selective equality of the
    ``indexable`` columns is left for an index to serve (``+`` keeps SQLite from using the
    others): without statistics SQLite may otherwise walk all 33,000 entries of an error
    kind to find one user's 700. With ``probe``, the other columns are tested in their
    own indexes (``_PROBE``): a query that reads only ``failed_at`` and ``job_id`` then
    reads no row but those it returns. ``order``: the columns to test first (the rarer
    values: they leave fewer entries for the next)."""
    clauses: list[str] = []
    params: list[Any] = []
    values = {
        "queue": filter.queue,
        "user_id": filter.user_id,
        "error_kind": filter.error_kind.value if filter.error_kind else None,
        "task": filter.task,
        "fingerprint": filter.fingerprint,
    }
    indexed = False
    for column in [*order, *(c for c in _BY_SELECTIVITY if c not in order)]:
        value = values[column]
        if value is not None:
            plain = not indexed and column in indexable
            if plain or not probe:
                clauses.append(f"{'' if plain else '+'}d.{column} = ?")
            else:
                clauses.append(_PROBE.format(index=_INDEX_OF[column], column=column))
            params.append(value)
            indexed = indexed or plain
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


#: The WHERE clause of a filter no entry matches (a value without entries).
NOTHING = "WHERE 0"


def planned_where(
    conn: sqlite3.Connection,
    filter: DLQFilter,
    after: tuple[float, str] | None,
    *,
    probe: bool = False,
) -> tuple[str, list[Any]]:
    """``dlq_where`` with the index of the filter's rarest value, by the counters
    (``counted.columns_by_rarity``; the others are tested rarest first); ``WHERE 0``
    when no entry has one of its values, which SQLite answers without reading anything."""
    return _ordered_where(columns_by_rarity(conn, filter), filter, after, probe=probe)


def _ordered_where(
    order: list[str] | None,
    filter: DLQFilter,
    after: tuple[float, str] | None,
    *,
    probe: bool = False,
) -> tuple[str, list[Any]]:
    """``planned_where`` for the columns ``columns_by_rarity`` gave: rarest first, [] for
    fewer than two fields, None when a value has no entries."""
    if order is None:
        return NOTHING, []
    if not order:  # fewer than two fields: the usual order
        return dlq_where(filter, after)
    return dlq_where(filter, after, indexable=order[:1], probe=probe, order=order)


#: A page of a filter on two or more fields: its (failed_at, id) pairs are found in the
#: indexes alone (the rarest value's, the others probed), then only its rows are read.
LIST_PROBED = f"""
SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM (
    SELECT d.failed_at, d.job_id FROM dead_letters d {{where}}
    ORDER BY d.failed_at DESC, d.job_id DESC LIMIT ?
) m JOIN dead_letters d ON d.job_id = m.job_id JOIN jobs j ON j.id = d.job_id
ORDER BY m.failed_at DESC, m.job_id DESC
"""


def dlq_page_rows(
    conn: sqlite3.Connection, filter: DLQFilter, after: tuple[float, str] | None, size: int
) -> list[Any]:
    """The rows (``SELECT_ENTRY``, ``SELECT_JOB``) of at most ``size`` entries matching
    ``filter`` after the cursor, newest first."""
    order = columns_by_rarity(conn, filter)
    where, params = _ordered_where(order, filter, after, probe=True)
    # Two or more fields are probed: LIST_PROBED keeps the walk on the covering indexes;
    # joined to jobs at once, SQLite would read every candidate's row first.
    sql = LIST_PROBED if order else LIST_ENTRIES
    return conn.execute(sql.format(where=where), (*params, size)).fetchall()


def dlq_count(conn: sqlite3.Connection, filter: DLQFilter) -> int:
    """How many entries match ``filter``: from the indexes alone."""
    where, params = planned_where(conn, filter, None, probe=True)
    return int(conn.execute(COUNT_ENTRIES.format(where=where), params).fetchone()[0])


def _grouped(
    conn: sqlite3.Connection, column: str, where: str, params: list[Any]
) -> dict[str, int]:
    sql = f"SELECT {column}, COUNT(*) c FROM dead_letters d {where} GROUP BY 1 ORDER BY c DESC, 1"
    return {str(k if k is not None else "(none)"): c for k, c in conn.execute(sql, params)}


#: Per (kind, fingerprint, task): counts, a sample and the tasks of each fingerprint. It
#: follows the order of the index ``dead_letters_groups`` (error_kind, fingerprint, task,
#: queue), which holds every column it reads when no user or time is filtered on.
_GROUPS = """
SELECT fingerprint, SUM(n) c, MAX(sample), json_group_array(DISTINCT task) FROM (
    SELECT d.fingerprint, d.task, COUNT(*) n, MAX(d.job_id) sample FROM dead_letters d
    {where} GROUP BY d.error_kind, d.fingerprint, d.task
) GROUP BY fingerprint ORDER BY c DESC, fingerprint LIMIT ?
"""
#: Reading one entry's row costs about as much as reading this many index entries.
_LOOKUP_COST = 8


def groups_query(conn: sqlite3.Connection, filter: DLQFilter, top: int) -> tuple[str, list[Any]]:
    """The grouping query for ``filter``. Many matching entries are grouped from the
    covering index alone (a scan of all of it costs less than looking up a large share of
    the rows); a few, through the filter's own index and their rows."""
    where, params = planned_where(conn, filter, None)
    if (
        where != NOTHING
        and filter.user_id is None
        and filter.since is None
        and filter.until is None
    ):
        matching = conn.execute(COUNT_ENTRIES.format(where=where), params).fetchone()[0]
        total = conn.execute(COUNT_ENTRIES.format(where=""), ()).fetchone()[0]
        if matching * _LOOKUP_COST > total:
            where, params = dlq_where(filter, None, indexable=("error_kind",))
    return _GROUPS.format(where=where), [*params, top]


def dlq_groups(conn: sqlite3.Connection, filter: DLQFilter, top: int) -> list[FingerprintGroup]:
    """The ``top`` most frequent fingerprints, with their tasks, in one query."""
    if replace(filter, queue=None).is_empty:
        return counted_stats(conn, filter.queue, top).top_fingerprints
    sql, params = groups_query(conn, filter, top)
    groups = []
    rows = conn.execute(sql, params).fetchall()
    for fingerprint, count, sample_id, tasks in rows:
        sample = _entry(conn, sample_id)
        groups.append(
            FingerprintGroup.from_sample(fingerprint, count, sorted(orjson.loads(tasks)), sample)
        )
    return groups


def dlq_stats(conn: sqlite3.Connection, filter: DLQFilter, top: int) -> DLQStats:
    if replace(filter, queue=None).is_empty:
        return counted_stats(conn, filter.queue, top)
    where, params = planned_where(conn, filter, None)
    total = conn.execute(f"SELECT COUNT(*) FROM dead_letters d {where}", params).fetchone()[0]
    # The UTC day of each entry (day_of), counted by SQLite.
    days_sql = (
        "SELECT strftime('%Y-%m-%d', d.failed_at, 'unixepoch') day, COUNT(*) "
        f"FROM dead_letters d {where} GROUP BY day ORDER BY day"
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
        by_day=dict(conn.execute(days_sql, params).fetchall()),
        top_fingerprints=dlq_groups(conn, filter, top),
        cost_lost=cost,
    )


#: The entries matching a filter, newest first, each with whether its reason or last
#: error message contains the (lower-cased) text: SQLite reads and matches them, and
#: stops when the caller stops reading. (Its ``lower`` folds ASCII letters only.)
_SEARCH = """
SELECT d.job_id, d.failed_at, instr(lower(d.reason || char(10) || CASE
    WHEN json_valid(j.last_error) THEN coalesce(json_extract(j.last_error, '$.message'), '')
    ELSE '' END), ?) > 0
FROM dead_letters d JOIN jobs j ON j.id = d.job_id {where}
ORDER BY d.failed_at DESC, d.job_id DESC LIMIT ?
"""


def dlq_search(
    conn: sqlite3.Connection,
    filter: DLQFilter,
    text: str,
    cursor: str | None,
    *,
    limit: int,
    scan: int,
) -> SearchPage:
    """``Backend.dlq_search`` for an ASCII ``text``: only the matches are decoded."""
    where, params = planned_where(conn, filter, decode_cursor(cursor))
    rows = conn.execute(_SEARCH.format(where=where), (text.lower(), *params, scan))
    found: list[str] = []
    scanned, last = 0, None
    for job_id, failed_at, hit in rows:
        scanned, last = scanned + 1, (float(failed_at), str(job_id))
        if hit:
            found.append(job_id)
            if len(found) == limit:
                break
    rows.close()
    if last is None:  # nothing matches the filter after the cursor
        return SearchPage([], None, 0)
    items = [e for e in (_entry(conn, job_id) for job_id in found) if e is not None]
    if len(found) == limit:  # a full page: the next goes on after its last entry
        return SearchPage(items, encode_cursor(*last), scanned)
    after, after_params = planned_where(conn, filter, last)
    more = scanned == scan and bool(
        conn.execute(f"SELECT 1 FROM dead_letters d {after} LIMIT 1", after_params).fetchone()
    )
    return SearchPage(items, encode_cursor(*last) if more else None, scanned)


def _entry(conn: sqlite3.Connection, job_id: str) -> DeadLetter | None:
    row = conn.execute(ENTRY_BY_ID, (job_id,)).fetchone()
    return row_to_entry(row, stacks_of(conn)) if row else None


def move_one(conn: sqlite3.Connection, prepared: MoveValues, now: float) -> bool:
    """Apply one move (a fenced compare-and-set, with its DLQ entry written or removed);
    whether it applied."""
    move, values, entry, stacks = prepared
    sql = UPDATE_JOB + MOVE_WHERE + (MOVE_EXPIRED if move.require_expired_lease else "")
    params: tuple[Any, ...] = (
        *values[1:],
        move.job.id,
        move.expect_state.value,
        move.expect_token,
    )
    if move.require_expired_lease:
        params = (*params, now)
    try:
        if conn.execute(sql, params).rowcount != 1:
            return False
    except sqlite3.IntegrityError:
        return False  # another pending job holds the idempotency key
    if move.job.state is JobState.DEAD:
        if entry is None:
            raise ValueError("a move to DEAD needs its entry")
        conn.executemany(ADD_STACK, sorted(stacks.items()))
        conn.execute(DELETE_ENTRY, (move.job.id,))  # a stale one leaves its counts
        conn.execute(INSERT_ENTRY, (*entry, orjson.dumps(sorted(stacks)).decode()))
    elif move.expect_state is JobState.DEAD:
        conn.execute(DELETE_ENTRY, (move.job.id,))
    if gone_at_finish(move.job):
        conn.execute(DELETE_JOB, (move.job.id,))
    return True
