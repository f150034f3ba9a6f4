"""SQLite connections and schema migrations.

Connections use WAL (readers never block the writer), a busy timeout (writers queue up
instead of failing) and ``BEGIN IMMEDIATE`` for every write transaction, so the write
lock is taken up front and two processes cannot both read-then-write the same rows.
Migrations are the numbered ``.sql`` files next to this module, applied in order inside
one transaction each and recorded in ``PRAGMA user_version``; concurrent processes
opening a new file apply each migration exactly once.
"""

from __future__ import annotations

import re
import sqlite3
import time

from genqueue.backends.migrations import numbered_migrations
from genqueue.errors import ConfigError

SYNCHRONOUS = ("off", "normal", "full", "extra")


WAL_SIZE_LIMIT = 64 * 2**20


def connect(
    path: str, *, busy_timeout_ms: int = 5000, synchronous: str = "normal"
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = _enable_wal(conn, busy_timeout_ms / 1000)
    if path != ":memory:" and str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"could not enable WAL on {path} (journal_mode={mode})")
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA foreign_keys = OFF")
    # A WAL that grew while readers held back checkpoints is cut back to this size once a
    # checkpoint resets it, instead of keeping its peak size on disk for good.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    return conn


def _enable_wal(conn: sqlite3.Connection, patience: float) -> str:
    """Switch to WAL. Several processes opening a new file at once race for the exclusive
    lock this needs, and SQLite answers "locked" without calling the busy handler, so the
    losers wait and try again (within the busy timeout)."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    return numbered_migrations("genqueue.backends.sqlite")


def split_statements(script: str) -> list[str]:
    """Split a script into complete statements (triggers and quoted ';' included)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply pending migrations (up to ``target``); return the schema version."""
    # Read first without the write lock: on an up-to-date file (every open but the first)
    # opening must not queue behind busy writers for the lock (and time out under load).
    known = int(conn.execute("PRAGMA user_version").fetchone()[0])
    files = migrations()
    newest = files[-1][0]
    if known > newest:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        raise ConfigError(
            f"{path or 'the database'}: genqueue schema version {known}, newer than this "
            f"genqueue knows ({newest}): a newer genqueue migrated it; upgrade genqueue"
        )
    for version, _, sql in files:
        if target is not None and version > target:
            break
        if version <= known:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= version:
                conn.execute("COMMIT")
                continue
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """The schema as (type, name, normalised sql), to compare databases in tests."""
    sql = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
    rows = conn.execute(sql).fetchall()
    return [(t, n, re.sub(r"\s+", " ", s or "").strip()) for t, n, s in rows]
