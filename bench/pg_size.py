"""The size on disk of a PostgreSQL schema's tables, as the benchmarks report it."""

from __future__ import annotations

from typing import Any

SCHEMA_BYTES = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind = 'r'"
)


def schema_bytes(conn: Any, schema: str) -> int:
    """Bytes of every table of ``schema``, with their indexes and TOAST (a psycopg
    connection)."""
    row = conn.execute(SCHEMA_BYTES, (schema,)).fetchone()
    return int(row[0]) if row else 0
