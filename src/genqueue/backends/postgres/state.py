"""Shared state of the PostgreSQL backend: versioned records, concurrency slots, tallies.

A compare-and-set is one statement (an upsert guarded by the stored version, or a fenced
update), so it cannot interleave with another process's. Taking a slot counts the live
slots of its key and adds one, which must not interleave either: it runs in a
transaction holding an advisory lock on the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from genqueue.backends.postgres.connection import Conn, execute, fetch_all, fetch_one
from genqueue.backends.postgres.queries import NOW


class StateQueries:
    def __init__(self, s: str) -> None:
        self.get = (
            f"SELECT value, version FROM {s}.shared_state "
            f"WHERE key = %(key)s AND (expires_at IS NULL OR expires_at > {NOW})"
        )
        # Absent, or present but expired: counts as version 0.
        self.create = f"""
INSERT INTO {s}.shared_state AS st (key, value, version, expires_at)
VALUES (%(key)s, %(value)s, 1, {NOW} + %(ttl)s::float8)
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value, version = st.version + 1, expires_at = excluded.expires_at
    WHERE st.expires_at IS NOT NULL AND st.expires_at <= {NOW}
RETURNING version
"""
        self.replace = f"""
UPDATE {s}.shared_state
SET value = %(value)s, version = version + 1, expires_at = {NOW} + %(ttl)s::float8
WHERE key = %(key)s AND version = %(expect)s AND (expires_at IS NULL OR expires_at > {NOW})
RETURNING version
"""
        self.lock = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
        self.free_expired = f"DELETE FROM {s}.slots WHERE key = %(key)s AND expires_at <= {NOW}"
        self.holds = f"SELECT 1 FROM {s}.slots WHERE key = %(key)s AND holder = %(holder)s"
        self.count_all = f"SELECT count(*) FROM {s}.slots WHERE key = %(key)s"
        self.take = f"""
INSERT INTO {s}.slots (key, holder, expires_at) VALUES (%(key)s, %(holder)s, {NOW} + %(ttl)s)
ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at
"""
        self.release = f"DELETE FROM {s}.slots WHERE key = %s AND holder = %s"
        self.holders = (
            f"SELECT holder FROM {s}.slots WHERE key = %(key)s AND expires_at > {NOW} "
            "ORDER BY holder"
        )
        self.count_live = (
            f"SELECT count(*) FROM {s}.slots WHERE key = %(key)s AND expires_at > {NOW}"
        )
        self.tally_add = f"""
INSERT INTO {s}.tallies AS t (bucket, name, value) VALUES (%s, %s, %s)
ON CONFLICT (bucket, name) DO UPDATE SET value = t.value + excluded.value
"""
        self.tally_buckets = (
            f"SELECT bucket, name, value FROM {s}.tallies WHERE bucket BETWEEN %s AND %s"
        )
        self.tally_prune = f"DELETE FROM {s}.tallies WHERE bucket < %s"
        self.tally_read = (
            f"SELECT name, sum(value) FROM {s}.tallies WHERE bucket BETWEEN %s AND %s GROUP BY name"
        )
        self.lock_prefix = f"genqueue-slot:{s}:"


async def get(conn: Conn, q: StateQueries, key: str, now: float | None) -> tuple[Any, int] | None:
    row = await fetch_one(conn, q.get, {"key": key, "now": now})
    return None if row is None else (orjson.loads(row[0]), int(row[1]))


async def put(
    conn: Conn,
    q: StateQueries,
    key: str,
    value: Any,
    *,
    expect_version: int,
    ttl: float | None,
    now: float | None,
) -> int | None:
    params = {
        "key": key,
        "value": orjson.dumps(value).decode(),
        "expect": expect_version,
        "now": now,
        "ttl": None if ttl is None else float(ttl),  # no ttl: NULL + now is NULL, no expiry
    }
    row = await fetch_one(conn, q.create if expect_version == 0 else q.replace, params)
    return None if row is None else int(row[0])


async def acquire(
    conn: Conn, q: StateQueries, key: str, holder: str, *, limit: int, ttl: float, now: float | None
) -> bool:
    """Take or renew a slot; call inside a transaction."""
    params = {"key": key, "holder": holder, "now": now, "ttl": float(ttl)}
    await execute(conn, q.lock, (q.lock_prefix + key,))
    await execute(conn, q.free_expired, params)
    if await fetch_one(conn, q.holds, params) is None:
        row = await fetch_one(conn, q.count_all, params)
        if row is not None and int(row[0]) >= limit:
            return False
    await execute(conn, q.take, params)
    return True


async def release(conn: Conn, q: StateQueries, key: str, holder: str) -> None:
    await execute(conn, q.release, (key, holder))


async def holders(conn: Conn, q: StateQueries, key: str, now: float | None) -> list[str]:
    return [str(r[0]) for r in await fetch_all(conn, q.holders, {"key": key, "now": now})]


async def count(conn: Conn, q: StateQueries, key: str, now: float | None) -> int:
    row = await fetch_one(conn, q.count_live, {"key": key, "now": now})
    return int(row[0]) if row else 0


async def tally_add(
    conn: Conn, q: StateQueries, bucket: int, counts: Mapping[str, float], oldest: int
) -> None:
    """Add counts to a bucket and forget old buckets; call inside a transaction."""
    async with conn.cursor() as cur:
        await cur.executemany(q.tally_add, [(bucket, name, float(n)) for name, n in counts.items()])
    await execute(conn, q.tally_prune, (oldest,))


async def tally_read(conn: Conn, q: StateQueries, first: int, last: int) -> dict[str, float]:
    return {str(name): float(n) for name, n in await fetch_all(conn, q.tally_read, (first, last))}


async def tally_buckets(
    conn: Conn, q: StateQueries, first: int, last: int
) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for bucket, name, n in await fetch_all(conn, q.tally_buckets, (first, last)):
        out.setdefault(int(bucket), {})[str(name)] = float(n)
    return out
