"""Named SQL of the PostgreSQL backend, rendered once per schema.

Templates name tables as ``{s}.jobs``; ``Queries(schema)`` fills in the quoted schema.
Values are always bound parameters. Statements that need "now" take ``%(now)s``: the
test clock's time when a ``FakeClock`` was given, else NULL, which ``NOW`` turns into the
server's ``statement_timestamp()`` (one instant for the whole statement).
"""

from __future__ import annotations

from typing import Any

from genqueue.backends.base import JobQuery
from genqueue.backends.postgres.schema import quoted
from genqueue.backends.sqlite.rows import ENTRY_COLUMNS, JOB_COLUMNS

PENDING = "('queued', 'scheduled', 'active', 'retrying')"
NOW = "COALESCE(%(now)s::float8, extract(epoch FROM statement_timestamp())::float8)"
SELECT_JOB = ", ".join(f"j.{c}" for c in JOB_COLUMNS)
SELECT_ENTRY = ", ".join(f"d.{c}" for c in ENTRY_COLUMNS)
_COLUMNS = ", ".join(JOB_COLUMNS)

INSERT_JOB = f"INSERT INTO {{s}}.jobs ({_COLUMNS}) VALUES ({', '.join('%s' for _ in JOB_COLUMNS)})"
# A job with an idempotency key is stored only if no pending job of its queue holds the key.
INSERT_KEYED = (
    INSERT_JOB + " ON CONFLICT (queue, idempotency_key) "
    f"WHERE idempotency_key IS NOT NULL AND state IN {PENDING} DO NOTHING RETURNING id"
)
PENDING_BY_KEY = (
    f"SELECT {SELECT_JOB} FROM {{s}}.jobs j "
    f"WHERE j.queue = %s AND j.idempotency_key = %s AND j.state IN {PENDING}"
)
JOBS_BY_IDS = f"SELECT {SELECT_JOB} FROM {{s}}.jobs j WHERE j.id = ANY(%s)"
JOB_BY_ID = f"SELECT {SELECT_JOB} FROM {{s}}.jobs j WHERE j.id = %s"
IDS_WITH_PREFIX = "SELECT id FROM {s}.jobs WHERE id >= %s AND id < %s ORDER BY id LIMIT %s"
COUNTS = "SELECT queue, state, count(*) FROM {s}.jobs GROUP BY queue, state"
ANY_READY = "SELECT 1 FROM {s}.jobs WHERE state = 'queued' AND queue = ANY(%s) LIMIT 1"
OLDEST_READY = "SELECT queue, min(run_at) FROM {s}.jobs WHERE state = 'queued' GROUP BY queue"

# Claim: per queue, the oldest due jobs (queued, or scheduled/retrying whose time has
# come: those are promoted and claimed at once), then the oldest of all of them. Locked
# rows are skipped, so concurrent workers never wait for each other or claim a job twice.
# Other due scheduled/retrying jobs (of any queue) are promoted in the same statement.
FETCH = f"""
WITH clock AS MATERIALIZED (SELECT {NOW} AS now),
picked AS MATERIALIZED (
    SELECT c.seq FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT j.seq, j.run_at FROM {{s}}.jobs j
        WHERE j.queue = q.name AND j.state IN ('queued', 'scheduled', 'retrying')
            AND j.run_at <= (SELECT now FROM clock)
        ORDER BY j.run_at, j.seq LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.run_at, c.seq LIMIT %(limit)s
),
promoted AS (
    UPDATE {{s}}.jobs SET state = 'queued', updated_at = (SELECT now FROM clock)
    WHERE seq IN (
        SELECT seq FROM {{s}}.jobs
        WHERE state IN ('scheduled', 'retrying') AND run_at <= (SELECT now FROM clock)
            AND seq NOT IN (SELECT seq FROM picked)
        ORDER BY run_at LIMIT %(promote)s
        FOR UPDATE SKIP LOCKED
    )
)
UPDATE {{s}}.jobs j SET state = 'active', attempts = j.attempts + 1,
    lease_owner = %(worker)s, lease_expires_at = clock.now + %(lease)s,
    started_at = clock.now, updated_at = clock.now
FROM clock
WHERE j.seq IN (SELECT seq FROM picked)
RETURNING {SELECT_JOB}, j.seq
"""

PROMOTE = f"""
UPDATE {{s}}.jobs SET state = 'queued', updated_at = {NOW}
WHERE seq IN (
    SELECT seq FROM {{s}}.jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= {NOW}
    ORDER BY run_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

# Rows are locked in id order (here and in MOVE_LOCK), so a heartbeat and a batch of
# moves of the same jobs wait for each other instead of deadlocking.
HEARTBEAT = f"""
WITH clock AS MATERIALIZED (SELECT {NOW} AS now),
live AS MATERIALIZED (
    SELECT j.seq FROM {{s}}.jobs j
    JOIN unnest(%(ids)s::text[], %(tokens)s::int[]) AS l(id, token) ON j.id = l.id
    WHERE j.state = 'active' AND j.attempts = l.token
        AND j.lease_expires_at > (SELECT now FROM clock)
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE {{s}}.jobs j SET lease_expires_at = clock.now + %(lease)s
FROM clock WHERE j.seq IN (SELECT seq FROM live)
RETURNING j.id
"""

UPDATE_RUNNING = f"""
UPDATE {{s}}.jobs SET
    progress = COALESCE(%(progress)s, progress),
    remote_job_id = COALESCE(%(remote_job_id)s, remote_job_id),
    meta = CASE WHEN %(meta)s::text IS NULL THEN meta
        ELSE (meta::jsonb || %(meta)s::jsonb)::text END,
    cost = COALESCE(%(cost)s, cost),
    updated_at = {NOW}
WHERE id = %(id)s AND state = 'active' AND attempts = %(token)s AND lease_expires_at > {NOW}
"""

MOVE_LOCK = "SELECT 1 FROM {s}.jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE"

# One move: the fenced compare-and-set of the job, and its dead letter entry written
# (moving to DEAD) or removed (moving out of DEAD), in one statement. A job moving to a
# pending state with an idempotency key another pending job holds is not moved.
_SET_JOB = ", ".join(f"{c} = %({c})s" for c in JOB_COLUMNS[1:])
_ENTRY_TYPES = {"failed_at": "float8", "expires_at": "float8"}
# Typed: parameters in a SELECT list would otherwise be read as text.
_ENTRY_VALUES = ", ".join(f"%(e_{c})s::{_ENTRY_TYPES.get(c, 'text')}" for c in ENTRY_COLUMNS)
_ENTRY_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in ENTRY_COLUMNS[1:])
_MOVABLE = f"""id = %(id)s AND state = %(expect_state)s AND attempts = %(expect_token)s
        AND (NOT %(require_expired)s OR lease_expires_at <= {NOW})"""
# A job that expires as it finishes (base.gone_at_finish: %(gone)s) is deleted, not updated.
# (The final SELECT sees the rows as they were before the statement's own writes.)
MOVE = f"""
WITH dropped AS (
    DELETE FROM {{s}}.jobs WHERE %(gone)s AND {_MOVABLE}
    RETURNING id
),
moved AS (
    UPDATE {{s}}.jobs SET {_SET_JOB}
    WHERE NOT %(gone)s AND {_MOVABLE}
        AND (NOT %(holds_key)s OR NOT EXISTS (
            SELECT 1 FROM {{s}}.jobs o
            WHERE o.queue = %(queue)s AND o.idempotency_key = %(idempotency_key)s
                AND o.state IN {PENDING} AND o.id <> %(id)s))
    RETURNING id
),
entry AS (
    INSERT INTO {{s}}.dead_letters ({", ".join(ENTRY_COLUMNS)})
    SELECT {_ENTRY_VALUES} FROM moved WHERE %(to_dead)s
    ON CONFLICT (job_id) DO UPDATE SET {_ENTRY_UPDATE}
),
unentry AS (
    DELETE FROM {{s}}.dead_letters
    WHERE %(from_dead)s AND job_id IN (SELECT id FROM moved)
)
SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM dropped) + (
    -- Sent again after a lost reply (resent): the job exactly as this move left it
    -- means the first send committed; report it applied, changing nothing.
    SELECT count(*) FROM {{s}}.jobs
    WHERE %(resent)s AND NOT %(gone)s AND id = %(id)s AND state = %(state)s
        AND attempts = %(attempts)s AND updated_at = %(updated_at)s
        AND lease_owner IS NOT DISTINCT FROM %(lease_owner)s
        AND NOT EXISTS (SELECT 1 FROM moved))
"""

EXPIRED = f"""
SELECT {SELECT_JOB} FROM {{s}}.jobs j
WHERE j.state = 'active' AND j.lease_expires_at <= {NOW}
ORDER BY j.lease_expires_at LIMIT %(limit)s
"""

PURGE_EXPIRED = """
DELETE FROM {s}.jobs WHERE seq IN (
    SELECT seq FROM {s}.jobs WHERE state IN ('completed', 'cancelled') AND expires_at <= %s
    ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""
# Jobs finished before expiries were stored (migration 0006) go by their age.
PURGE_UNEXPIRING = """
DELETE FROM {s}.jobs WHERE seq IN (
    SELECT seq FROM {s}.jobs WHERE state IN ('completed', 'cancelled') AND expires_at IS NULL
        AND finished_at < %s
    ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""
# The queues that have finished jobs, one index seek each (a loose index scan), and how
# many each has counted no further than ``keep + limit`` (not every finished job of a big
# queue for each batch of a purge).
QUEUES_WITH_FINISHED = """
WITH RECURSIVE q(name) AS (
    SELECT (SELECT min(queue) FROM {s}.jobs WHERE state IN ('completed', 'cancelled'))
    UNION ALL
    SELECT (SELECT min(queue) FROM {s}.jobs
            WHERE state IN ('completed', 'cancelled') AND queue > q.name)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
"""
FINISHED_OF_QUEUE_UP_TO = """
SELECT count(*) FROM (
    SELECT 1 FROM {s}.jobs WHERE queue = %s AND state IN ('completed', 'cancelled') LIMIT %s
) AS capped
"""
PURGE_OLDEST_OF_QUEUE = """
DELETE FROM {s}.jobs WHERE seq IN (
    SELECT seq FROM {s}.jobs WHERE queue = %s AND state IN ('completed', 'cancelled')
    ORDER BY expires_at NULLS FIRST, seq LIMIT %s FOR UPDATE SKIP LOCKED
)
"""


def window(
    clauses: list[str],
    params: list[Any],
    columns: tuple[str, str],
    span: tuple[float | None, float | None],
    after: tuple[float, str] | None,
) -> None:
    """Add the clauses of a newest-first page over ``columns`` (time, id): the time
    ``span`` [since, until) and the cursor (the last row of the page before)."""
    at, ident = columns
    since, until = span
    if since is not None:
        clauses.append(f"{at} >= %s::float8")
        params.append(float(since))
    if until is not None:
        clauses.append(f"{at} < %s::float8")
        params.append(float(until))
    if after is not None:
        clauses.append(f"({at}, {ident}) < (%s::float8, %s::text)")
        params.extend(after)


def list_jobs_sql(
    s: str, query: JobQuery, after: tuple[float, str] | None
) -> tuple[str, list[Any]]:
    """A page of ``list_jobs``: newest first, after the cursor, one more than the limit."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("queue", query.queue), ("task", query.task), ("user_id", query.user_id)):
        if value is not None:
            clauses.append(f"j.{column} = %s")
            params.append(value)
    if query.states is not None:
        clauses.append("j.state = ANY(%s)")
        params.append(sorted(state.value for state in query.states))
    window(clauses, params, ("j.created_at", "j.id"), (query.since, query.until), after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {SELECT_JOB} FROM {s}.jobs j {where} "
        "ORDER BY j.created_at DESC, j.id DESC LIMIT %s"
    )
    return sql, [*params, query.limit + 1]


class Queries:
    """Every named statement, with the schema filled in."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.s = quoted(schema)
        for name, template in _TEMPLATES.items():
            setattr(self, name, template.format(s=self.s))

    insert_job: str
    insert_keyed: str
    pending_by_key: str
    jobs_by_ids: str
    job_by_id: str
    ids_with_prefix: str
    counts: str
    oldest_ready: str
    any_ready: str
    fetch: str
    promote: str
    heartbeat: str
    update_running: str
    move_lock: str
    move: str
    expired: str
    purge_expired: str
    purge_unexpiring: str
    queues_with_finished: str
    finished_of_queue_up_to: str
    purge_oldest_of_queue: str


_TEMPLATES = {
    "insert_job": INSERT_JOB,
    "insert_keyed": INSERT_KEYED,
    "pending_by_key": PENDING_BY_KEY,
    "jobs_by_ids": JOBS_BY_IDS,
    "job_by_id": JOB_BY_ID,
    "ids_with_prefix": IDS_WITH_PREFIX,
    "counts": COUNTS,
    "oldest_ready": OLDEST_READY,
    "any_ready": ANY_READY,
    "fetch": FETCH,
    "promote": PROMOTE,
    "heartbeat": HEARTBEAT,
    "update_running": UPDATE_RUNNING,
    "move_lock": MOVE_LOCK,
    "move": MOVE,
    "expired": EXPIRED,
    "purge_expired": PURGE_EXPIRED,
    "purge_unexpiring": PURGE_UNEXPIRING,
    "queues_with_finished": QUEUES_WITH_FINISHED,
    "finished_of_queue_up_to": FINISHED_OF_QUEUE_UP_TO,
    "purge_oldest_of_queue": PURGE_OLDEST_OF_QUEUE,
}
