"""Real damaged SQLite files for the corruption tests: databases whose pages are overwritten
with garbage behind SQLite's back, and files that are not databases at all."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from genqueue import App
from genqueue.clock import Clock

#: Job data padding: large enough to spill into overflow pages, easy to find in the file.
MARKER = "Q7x" * 3000
GARBAGE = b"\xde\xad\xbe\xef"


async def make_db(
    path: Path,
    *,
    queue: str = "archive",
    jobs: int = 40,
    clock: Clock | None = None,
    **options: object,
) -> list[str]:
    """A closed genqueue database (its WAL checkpointed into the file) holding ``jobs`` jobs
    whose data lives in overflow pages, which only reading those jobs touches; their ids."""
    app = App(f"sqlite:///{path}", clock=clock)

    @app.task("archive.keep", queue=queue)
    async def keep(data: object) -> None:
        return None

    async with app:
        return [
            (await app.enqueue("archive.keep", {"i": i, "pad": MARKER}, **options)).id
            for i in range(jobs)
        ]


def page_size(path: Path) -> int:
    with path.open("rb") as f:
        header = f.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def _overwrite(path: Path, pages: list[int], size: int) -> None:
    # In place: a connection may hold the file open, as it would when a disk goes bad.
    with path.open("r+b") as f:
        for number in pages:
            f.seek((number - 1) * size)
            f.write(GARBAGE * (size // len(GARBAGE)))


def damage_job_data(path: Path) -> int:
    """Overwrite the overflow pages that hold job data (found by their content); return how
    many. The tables' structure stays intact, so only reading those jobs meets the damage."""
    size = page_size(path)
    data = path.read_bytes()
    marker = MARKER[:3].encode()
    pages = [
        start // size + 1
        for start in range(size, len(data), size)
        if data.count(marker, start, start + size) * len(marker) >= size * 0.9
    ]
    assert pages, "no overflow page found: the test data no longer spills"
    _overwrite(path, pages, size)
    return len(pages)


def wreck(path: Path) -> None:
    """Overwrite every page but the first: the schema still reads, no table does."""
    size = page_size(path)
    _overwrite(path, list(range(2, path.stat().st_size // size + 1)), size)


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def not_a_database(path: Path) -> None:
    path.write_bytes(b"these are notes, not a database\n" * 256)


def snapshot(path: Path) -> dict[str, tuple[str, int] | None]:
    """Content hash and mtime of the database and its WAL files (None: absent)."""
    out: dict[str, tuple[str, int] | None] = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        out[suffix] = (
            (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.exists()
            else None
        )
    return out


def touch_from_outside(path: Path) -> None:
    """Commit a small write through another connection, so a connection that cached the
    damaged pages sees the file changed and reads them again."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT OR REPLACE INTO slots (key, holder, expires_at) VALUES ('x', 'y', 0)")
    finally:
        conn.close()
