"""genqueue's schema in PostgreSQL: migrations, applied once even by concurrent workers.

Migrations are the numbered ``.sql`` files next to this module (like SQLite's). Each runs
in its own transaction that first takes a transaction-level advisory lock keyed on the
schema, then re-reads the applied versions: of several processes starting at once on a
new database, one applies each migration and the others wait, see it recorded and skip
it. DDL is transactional in PostgreSQL, so a migration that fails leaves nothing behind.
The files use unqualified names; they run with ``search_path`` set to genqueue's schema
for that transaction only. Applied versions are rows of ``genqueue_migrations``.
"""

from __future__ import annotations

from psycopg import sql

from genqueue.backends.migrations import numbered_migrations
from genqueue.backends.postgres.connection import Conn, execute, fetch_all, fetch_one
from genqueue.errors import ConfigError, StorageCorrupt

#: Tables genqueue's queries need (the integrity check looks for each).
TABLES = (
    "jobs",
    "dead_letters",
    "shared_state",
    "slots",
    "tallies",
    "dlq_counts",
    "dlq_count_deltas",
    "dlq_entry_costs",
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    return numbered_migrations("genqueue.backends.postgres")


def quoted(schema: str) -> str:
    """The schema as a quoted SQL identifier."""
    return sql.Identifier(schema).as_string(None)


def lock_key(schema: str) -> str:
    """The text an advisory lock on ``schema``'s migrations is keyed on (hashed by SQL)."""
    return f"genqueue-migrate:{schema}"


async def applied(conn: Conn, schema: str) -> list[int] | None:
    """Versions applied to ``schema`` (None if genqueue never ran there)."""
    table = f"{quoted(schema)}.genqueue_migrations"
    exists = await fetch_one(conn, "SELECT to_regclass(%s)", (table,))
    if exists is None or exists[0] is None:
        return None
    return [int(r[0]) for r in await fetch_all(conn, f"SELECT version FROM {table} ORDER BY 1")]


async def migrate(conn: Conn, schema: str, target: int | None = None) -> int:
    """Bring ``schema`` up to date (up to ``target``) on an autocommit connection; return
    the schema version."""
    known = migrations()
    done = await applied(conn, schema) or []
    newest = known[-1][0]
    if done and max(done) > newest:
        raise ConfigError(
            f"the genqueue schema {schema!r} is at version {max(done)}, newer than this "
            f"genqueue knows ({newest}): a newer genqueue migrated it; upgrade genqueue"
        )
    for version, name, script in known:
        if (target is not None and version > target) or version in done:
            continue
        async with conn.transaction():
            await _apply(conn, schema, version, name, script)
    return max(await applied(conn, schema) or [0])


async def _apply(conn: Conn, schema: str, version: int, name: str, script: str) -> None:
    """Apply one migration inside the caller's transaction, unless another process just
    did (checked under the lock)."""
    s = quoted(schema)
    await execute(
        conn, "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key(schema),)
    )
    await execute(conn, f"CREATE SCHEMA IF NOT EXISTS {s}")
    await execute(
        conn,
        f"CREATE TABLE IF NOT EXISTS {s}.genqueue_migrations ("
        "version integer PRIMARY KEY, name text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())",
    )
    if version in (await applied(conn, schema) or []):
        return
    await execute(conn, "SELECT set_config('search_path', %s, true)", (s,))
    await conn.execute(script.encode())  # several statements: no parameters
    await execute(
        conn,
        f"INSERT INTO {s}.genqueue_migrations (version, name) VALUES (%s, %s)",
        (version, name),
    )


async def check(conn: Conn, schema: str) -> None:
    """Raise ``StorageCorrupt`` if a migration is unrecorded or a table is missing."""
    done = await applied(conn, schema) or []
    missing = [v for v, _, _ in migrations() if v not in done]
    s = quoted(schema)
    tables = []
    for table in TABLES:
        found = await fetch_one(conn, "SELECT to_regclass(%s)", (f"{s}.{table}",))
        if found is None or found[0] is None:
            tables.append(table)
    if missing or tables:
        what = []
        if missing:
            what.append(f"migrations {missing} are not recorded")
        if tables:
            what.append(f"tables {tables} are missing")
        raise StorageCorrupt(
            f"the genqueue schema {schema!r} is damaged ({'; '.join(what)}); genqueue will "
            "not use it. Restore the database from a backup, or point genqueue at a new "
            "schema (?schema=...)",
            location=schema,
        )


async def drop(conn: Conn, schema: str) -> None:
    """Drop genqueue's schema and everything in it (tests)."""
    await execute(conn, f"DROP SCHEMA IF EXISTS {quoted(schema)} CASCADE")


async def schema_of(conn: Conn, schema: str) -> list[tuple[str, ...]]:
    """Tables, columns, indexes and triggers of ``schema``, to compare databases in tests."""
    columns = await fetch_all(
        conn,
        "SELECT table_name, column_name, data_type, coalesce(collation_name, ''), "
        "is_nullable, coalesce(column_default, '') FROM information_schema.columns "
        "WHERE table_schema = %s ORDER BY 1, 2",
        (schema,),
    )
    indexes = await fetch_all(
        conn,
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1, 2",
        (schema,),
    )
    triggers = await fetch_all(
        conn,
        "SELECT event_object_table, trigger_name, event_manipulation, action_statement "
        "FROM information_schema.triggers WHERE trigger_schema = %s ORDER BY 1, 2, 3",
        (schema,),
    )
    return [
        *(("column", *map(str, r)) for r in columns),
        *(("index", *map(str, r)) for r in indexes),
        *(("trigger", *map(str, r)) for r in triggers),
    ]
