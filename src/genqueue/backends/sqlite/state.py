"""Shared state of the SQLite backend: versioned records and concurrency slots.

Each function runs inside the caller's ``BEGIN IMMEDIATE`` transaction, so a
compare-and-set or a slot count cannot interleave with another process's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson


def tally_add(
    conn: sqlite3.Connection, bucket: int, counts: Mapping[str, float], oldest: int
) -> None:
    conn.executemany(
        "INSERT INTO tallies (bucket, name, value) VALUES (?, ?, ?) "
        "ON CONFLICT (bucket, name) DO UPDATE SET value = value + excluded.value",
        [(bucket, name, float(n)) for name, n in counts.items()],
    )
    conn.execute("DELETE FROM tallies WHERE bucket < ?", (oldest,))


def tally_read(conn: sqlite3.Connection, first: int, last: int) -> dict[str, float]:
    sql = "SELECT name, SUM(value) FROM tallies WHERE bucket BETWEEN ? AND ? GROUP BY name"
    return {name: float(n) for name, n in conn.execute(sql, (first, last))}


def tally_buckets(conn: sqlite3.Connection, first: int, last: int) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    sql = "SELECT bucket, name, value FROM tallies WHERE bucket BETWEEN ? AND ?"
    for bucket, name, n in conn.execute(sql, (first, last)):
        out.setdefault(int(bucket), {})[name] = float(n)
    return out


def get(conn: sqlite3.Connection, key: str, now: float) -> tuple[Any, int] | None:
    sql = (
        "SELECT value, version FROM shared_state "
        "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
    )
    row = conn.execute(sql, (key, now)).fetchone()
    return None if row is None else (orjson.loads(row[0]), int(row[1]))


def put(
    conn: sqlite3.Connection,
    key: str,
    value: Any,
    *,
    expect_version: int,
    expires_at: float | None,
    now: float,
) -> int | None:
    row = conn.execute(
        "SELECT version, expires_at FROM shared_state WHERE key = ?", (key,)
    ).fetchone()
    stored, expired = (int(row[0]), row[1] is not None and row[1] <= now) if row else (0, True)
    current = 0 if expired else stored
    if current != expect_version:
        return None
    version = stored + 1
    conn.execute(
        "INSERT OR REPLACE INTO shared_state (key, value, version, expires_at) VALUES (?, ?, ?, ?)",
        (key, orjson.dumps(value).decode(), version, expires_at),
    )
    return version


def acquire(
    conn: sqlite3.Connection, key: str, holder: str, *, limit: int, expires_at: float, now: float
) -> bool:
    conn.execute("DELETE FROM slots WHERE key = ? AND expires_at <= ?", (key, now))
    held = conn.execute(
        "SELECT 1 FROM slots WHERE key = ? AND holder = ?", (key, holder)
    ).fetchone()
    if held is None:
        count = conn.execute("SELECT COUNT(*) FROM slots WHERE key = ?", (key,)).fetchone()[0]
        if count >= limit:
            return False
    conn.execute(
        "INSERT OR REPLACE INTO slots (key, holder, expires_at) VALUES (?, ?, ?)",
        (key, holder, expires_at),
    )
    return True


def release(conn: sqlite3.Connection, key: str, holder: str) -> None:
    conn.execute("DELETE FROM slots WHERE key = ? AND holder = ?", (key, holder))


def holders(conn: sqlite3.Connection, key: str, now: float) -> list[str]:
    rows = conn.execute(
        "SELECT holder FROM slots WHERE key = ? AND expires_at > ? ORDER BY holder", (key, now)
    ).fetchall()
    return [str(row[0]) for row in rows]


def count(conn: sqlite3.Connection, key: str, now: float) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ?", (key, now)
    ).fetchone()
    return int(row[0])
