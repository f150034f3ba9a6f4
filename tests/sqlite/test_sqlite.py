"""SQLite specifics: pragmas, migrations, corrupted rows, concurrent opening."""

from __future__ import annotations

import io
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from genqueue import App, ErrorKind, JobState
from genqueue.backends.sqlite import SQLiteBackend
from genqueue.backends.sqlite.schema import (
    connect,
    migrate,
    migrations,
    schema_of,
    split_statements,
)
from genqueue.cli.main import run
from genqueue.errors import ConfigError
from tests.conftest import drain


def test_url_parsing(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(
        f"sqlite:///{tmp_path}/a.db?synchronous=full&busy_timeout_ms=100"
    )
    assert (
        backend.path == f"{tmp_path}/a.db"
        and backend.synchronous == "full"
        and backend.busy_timeout_ms == 100
    )
    assert SQLiteBackend.from_url("sqlite:///relative.db").path == "relative.db"
    with pytest.raises(ConfigError):
        SQLiteBackend.from_url("sqlite://host/x.db")


async def test_wal_and_busy_timeout(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "p.db"))
    await backend.open()
    try:
        conn = sqlite3.connect(tmp_path / "p.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    finally:
        await backend.close()


def test_migrations_are_numbered_and_split_cleanly() -> None:
    found = migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    for _, _, sql in found:
        assert all(sqlite3.complete_statement(s) for s in split_statements(sql))


def test_migrating_step_by_step_equals_a_fresh_schema(tmp_path: Path) -> None:
    fresh = connect(str(tmp_path / "fresh.db"))
    migrate(fresh)
    stepwise = connect(str(tmp_path / "old.db"))
    for version, _, _ in migrations():
        assert migrate(stepwise, target=version) == version
    assert migrate(stepwise) == len(migrations())  # idempotent
    assert schema_of(fresh) == schema_of(stepwise)
    fresh.close()
    stepwise.close()


def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    # Several rounds: the race for the lock that enabling WAL takes is not won the same
    # way every time.
    for round_ in range(10):
        path = str(tmp_path / f"race-{round_}.db")

        def open_and_migrate(_: int, path: str = path) -> int:
            conn = connect(path)
            try:
                return migrate(conn)
            finally:
                conn.close()

        with ThreadPoolExecutor(8) as pool:
            versions = list(pool.map(open_and_migrate, range(8)))
        assert set(versions) == {len(migrations())}


def _newer_database(path: Path) -> int:
    """A database file a newer genqueue migrated (one version past what this one knows)."""
    conn = connect(str(path))
    migrate(conn)
    newer = len(migrations()) + 1
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    return newer


async def test_a_database_a_newer_genqueue_migrated_is_refused(tmp_path: Path) -> None:
    newer = _newer_database(tmp_path / "newer.db")
    app = App(f"sqlite:///{tmp_path / 'newer.db'}")
    with pytest.raises(ConfigError, match=f"version {newer}, newer .* upgrade genqueue"):
        await app.open()
    await app.close()


def test_the_cli_refuses_a_newer_database_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "newer.db"
    _newer_database(path)
    assert run(["jobs", "list", "--backend", f"sqlite:///{path}"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err and "upgrade genqueue" in err


async def test_corrupted_job_data_is_dead_lettered_and_still_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    app = App(url)

    @app.task("gen")
    async def gen(ctx):  # type: ignore[no-untyped-def]
        return "should not run"

    async with app:
        job = await app.enqueue("gen", {"prompt": "ok"}, user_id="gone-user")
        conn = sqlite3.connect(tmp_path / "c.db")
        conn.execute("UPDATE jobs SET data = '{broken json' WHERE id = ?", (job.id,))
        conn.commit()
        conn.close()
        stored = await app.get(job.id)
        assert stored.data_error and stored.data == "{broken json"
        await drain(app)
        entry = await app.dlq.get(job.id)
        assert entry.error_kind is ErrorKind.VALIDATION
        assert "cannot be decoded" in entry.job.last_error.message  # type: ignore[union-attr]
        assert entry.job.state is JobState.DEAD and entry.user_id == "gone-user"
        out = io.StringIO()
        assert await app.dlq.export(out) == 1
        exported = json.loads(out.getvalue())
        assert exported["original_job"]["data"] == "{broken json" and exported["data_error"]
        # the raw text survives a redrive round trip untouched
        await app.dlq.redrive(job.id)
        assert (await app.get(job.id)).data == "{broken json"
