"""Damaged SQLite files: recognising the damage, the start-up check, closing without writing.

SQLite reports a damaged file as SQLITE_CORRUPT ("database disk image is malformed") or
SQLITE_NOTADB ("file is not a database"). Neither is transient: retrying cannot help, and
writing on can spread the damage, so the backend turns both into ``StorageCorrupt`` here
and refuses every later operation. ``PRAGMA quick_check`` reads every page (seconds on a
large file), so only workers run it, once, when they start.
"""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from pathlib import Path

from genqueue.errors import StorageCorrupt

_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_MESSAGES = ("database disk image is malformed", "file is not a database")
_DETAIL_WIDTH = 160


def is_damage(exc: sqlite3.Error) -> bool:
    """True if ``exc`` says the file itself is damaged (not busy, full or misused)."""
    # Extended codes (SQLITE_CORRUPT_INDEX, ...) keep the primary code in the low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _CODES:
        return True
    return any(message in str(exc) for message in _MESSAGES)


def damaged(path: str, detail: str) -> StorageCorrupt:
    """The one error line for a damaged file: which file, what SQLite saw, what to do."""
    where = path if path == ":memory:" else str(Path(path).absolute())
    detail = " ".join(detail.replace("*** in database main ***", "").split())
    if len(detail) > _DETAIL_WIDTH:
        detail = detail[: _DETAIL_WIDTH - 1] + "…"
    recover = f"sqlite3 {shlex.quote(where)} .recover | sqlite3 NEW.db"
    if _MESSAGES[1] in detail:
        # Most often a wrong path rather than a damaged header.
        message = (
            f"{where} is not a SQLite database, or its header is damaged; genqueue will not "
            f"write to it. Check that the backend URL names the right file; if it does, "
            f"restore it from a backup or recover what is readable: {recover}"
        )
    else:
        message = (
            f"the SQLite database {where} is damaged ({detail}); genqueue will not write to "
            f"it. Stop the workers using it, then restore it from a backup or recover what "
            f"is readable: {recover}"
        )
    return StorageCorrupt(message, location=where)


def quick_check(conn: sqlite3.Connection) -> str | None:
    """What ``PRAGMA quick_check`` found wrong, or None if the file is sound."""
    # One problem is enough to refuse the file; stopping there saves reading the rest.
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    found = " ".join(str(row[0]) for row in rows)
    return None if found == "ok" else found


def close_without_checkpoint(conn: sqlite3.Connection, path: str) -> None:
    """Close ``conn`` and leave the files as they are.

    The last connection to close a WAL database copies the WAL into the main file: a write
    into a file known to be damaged. A read-only connection held open meanwhile makes
    ``conn`` not the last one, and read-only connections never checkpoint, so the WAL
    stays beside the file for ``.recover`` to read.
    """
    if path == ":memory:":
        conn.close()
        return
    try:
        witness = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        conn.close()
        return
    # Reading the header joins the WAL without touching damaged pages. If even that fails
    # (NOTADB), the file never got a WAL and there is nothing to checkpoint.
    with contextlib.suppress(sqlite3.Error):
        witness.execute("PRAGMA user_version").fetchone()
    try:
        conn.close()
    finally:
        witness.close()
