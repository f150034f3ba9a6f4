"""Moves on PostgreSQL: a batch of outcomes in one transaction, each a fenced
compare-and-set of its job that writes or removes the job's DLQ entry in the same
statement (``queries.MOVE``).

A move sent again after its transaction committed but its reply was lost (the connection
failed at COMMIT) finds its job exactly as it left it; the query then reports it applied,
changing nothing, so that the worker announces the outcome instead of calling it
discarded. A fresh move finding the same row is refused as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors as pgerrors

from genqueue.backends.base import Move, gone_at_finish
from genqueue.backends.postgres.connection import Conn, Database, execute, fetch_one
from genqueue.backends.postgres.queries import Queries
from genqueue.backends.sqlite.rows import ENTRY_COLUMNS, JOB_COLUMNS, entry_values, job_values
from genqueue.job import JobState

_PENDING_STATES = frozenset(
    (JobState.QUEUED, JobState.SCHEDULED, JobState.ACTIVE, JobState.RETRYING)
)


async def move(db: Database, q: Queries, moves: Sequence[Move], now: float | None) -> list[bool]:
    """Apply ``moves`` in one transaction; whether each applied. ``now``: the test clock's
    time, or None for the server's."""
    if not moves:
        return []
    prepared = [params(m, now) for m in moves]  # encode all before any write
    ids = sorted({m.job.id for m in moves})
    sends = 0

    def sending() -> None:
        # An earlier send may have committed with its reply lost: the query checks that.
        nonlocal sends
        for each in prepared:
            each["resent"] = sends > 0
        sends += 1

    async def fast(conn: Conn) -> list[bool]:
        sending()
        if len(ids) > 1:
            await execute(conn, q.move_lock, (ids,))
        return await _all_at_once(conn, q.move, prepared)

    async def one_by_one(conn: Conn) -> list[bool]:
        sending()
        await execute(conn, q.move_lock, (ids,))
        return [await _alone(conn, q.move, each) for each in prepared]

    try:
        return await db.transaction("move", fast)
    except pgerrors.UniqueViolation:
        # Another transaction took an idempotency key a move re-takes, between our check
        # and our write; nothing was stored. Again, each move in a savepoint: that one
        # fails alone.
        return await db.transaction("move", one_by_one)


async def _all_at_once(conn: Conn, query: str, prepared: list[dict[str, Any]]) -> list[bool]:
    out: list[bool] = []
    async with conn.cursor() as cur:
        await cur.executemany(query, prepared, returning=True)
        while True:
            row = await cur.fetchone()
            out.append(bool(row and row[0]))
            if not cur.nextset():
                break
    return out


async def _alone(conn: Conn, query: str, params: dict[str, Any]) -> bool:
    try:
        async with conn.transaction():
            row = await fetch_one(conn, query, params)
    except pgerrors.UniqueViolation:
        return False
    return bool(row and row[0])


def params(move: Move, now: float | None) -> dict[str, Any]:
    """The parameters of ``queries.MOVE`` for one move."""
    job = move.job
    to_dead = job.state is JobState.DEAD
    if to_dead and move.entry is None:
        raise ValueError("a move to DEAD needs its entry")
    out: dict[str, Any] = dict(zip(JOB_COLUMNS, job_values(job), strict=True))
    entry = entry_values(move.entry) if to_dead and move.entry else (None,) * len(ENTRY_COLUMNS)
    out.update({f"e_{c}": v for c, v in zip(ENTRY_COLUMNS, entry, strict=True)})
    out.update(
        expect_state=move.expect_state.value,
        expect_token=move.expect_token,
        require_expired=move.require_expired_lease,
        holds_key=job.state in _PENDING_STATES and job.idempotency_key is not None,
        to_dead=to_dead,
        from_dead=move.expect_state is JobState.DEAD and not to_dead,
        gone=gone_at_finish(job),
        resent=False,
        now=now,
    )
    return out
