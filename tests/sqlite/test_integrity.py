"""Damaged SQLite files: the worker's start-up check, damage met at run time, and the one
error line every command prints instead of writing on."""

from __future__ import annotations

import asyncio
import shlex
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from genqueue import App, FakeClock, JobState, StorageCorrupt, Worker, WorkerSettings
from genqueue.backends.base import Move
from genqueue.backends.sqlite import integrity
from genqueue.batcher import MoveBatcher
from genqueue.cli.main import run
from genqueue.events import EventName
from tests.sqlite.damage import (
    damage_job_data,
    make_db,
    not_a_database,
    snapshot,
    touch_from_outside,
    truncate,
    wreck,
)

DAMAGE: dict[str, Callable[[Path], object]] = {
    "job data": damage_job_data,
    "every page": wreck,
    "truncated": truncate,
    "not a database": not_a_database,
}


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.db"
    monkeypatch.setenv("GENQUEUE_BACKEND", f"sqlite:///{path}")
    monkeypatch.delenv("GENQUEUE_APP", raising=False)
    asyncio.run(make_db(path))
    return path


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ``PRAGMA quick_check`` a backend runs."""
    calls: list[str] = []
    real = integrity.quick_check

    def spy(conn: sqlite3.Connection) -> str | None:
        calls.append("quick_check")
        return real(conn)

    monkeypatch.setattr(integrity, "quick_check", spy)
    return calls


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def the_error_line(err: str, path: Path) -> str:
    """The command's error line; it names the file and how to recover, and comes alone."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    recover = f"sqlite3 {shlex.quote(str(path))} .recover | sqlite3 NEW.db"
    assert str(path) in errors[0] and recover in errors[0]
    assert err.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("kind", DAMAGE)
def test_worker_refuses_to_start_on_a_damaged_file(
    db: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    DAMAGE[kind](db)
    damaged = snapshot(db)[""]
    code, _, err = cli(capsys, "worker", "--burst")
    assert code == 1
    line = the_error_line(err, db)
    assert err.strip() == line  # refused before the worker logged anything
    assert snapshot(db)[""] == damaged


def test_not_a_database_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_database(db)
    code, _, err = cli(capsys, "worker", "--burst")
    assert code == 1 and "is not a SQLite database" in the_error_line(err, db)


def test_skipping_the_check_starts_the_worker_but_damage_met_later_stops_it(
    db: Path, capsys: pytest.CaptureFixture[str], quick_checks: list[str]
) -> None:
    damage_job_data(db)
    # The damage is in jobs of the "archive" queue, which a worker of the demo queues never
    # reads: without the check it starts and finishes normally.
    code, _, err = cli(capsys, "worker", "--burst", "--skip-integrity-check")
    assert code == 0, err
    assert quick_checks == []
    # A worker of that queue meets the damage when it claims the jobs, and stops at once
    # instead of retrying the fetch forever.
    code, _, err = cli(capsys, "worker", "--burst", "--skip-integrity-check", "--queue", "archive")
    assert code == 1
    the_error_line(err, db)
    assert quick_checks == []


def test_damage_met_by_start_up_maintenance_stops_the_worker_quietly(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wreck(db)  # the first maintenance step (promote) already reads a damaged page
    code, _, err = cli(capsys, "worker", "--burst", "--skip-integrity-check")
    assert code == 1
    the_error_line(err, db)  # no "maintenance failed; continuing" traceback before it


async def test_the_move_batcher_does_not_retry_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    ids = await make_db(path, jobs=1)
    app = App(f"sqlite:///{path}")
    async with app:
        job = await app.get(ids[0])
        wreck(path)
        with pytest.raises(StorageCorrupt):
            await app.backend.fetch(["archive"], "w", 1, 30.0)
        calls = []
        real_move = app.backend.move

        async def counted(moves: Sequence[Move]) -> list[bool]:
            calls.append(len(moves))
            return await real_move(moves)

        app.backend.move = counted  # type: ignore[method-assign]
        cancelled = replace(job, state=JobState.CANCELLED, finished_at=job.created_at)
        with pytest.raises(StorageCorrupt):
            await MoveBatcher(app.backend, retries=5).submit(
                Move(cancelled, JobState.QUEUED, job.attempts)
            )
        assert calls == [1]


async def test_damage_met_at_run_time_refuses_every_later_operation(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    ids = await make_db(path)
    app = App(f"sqlite:///{path}")
    app.task("archive.keep", queue="archive")(lambda data: None)
    await app.open()
    try:
        # A job stored after opening: its pages are in the WAL, not in the damaged file.
        fresh = await app.enqueue("archive.keep", {"small": True})
        damage_job_data(path)
        with pytest.raises(StorageCorrupt) as raised:
            await app.get(ids[0])
        assert str(path) in str(raised.value) and ".recover" in str(raised.value)
        before = snapshot(path)
        # A new job touches none of the damaged pages; it is refused all the same.
        with pytest.raises(StorageCorrupt):
            await app.enqueue("archive.keep", {"small": True})
        with pytest.raises(StorageCorrupt):
            await app.get(fresh.id)
        with pytest.raises(StorageCorrupt):
            await app.backend.fetch(["archive"], "w", 10, 30.0)
        assert snapshot(path) == before
    finally:
        await app.close()
    after = snapshot(path)
    # Closing did not checkpoint the WAL into the damaged file; the WAL stays for .recover.
    assert after[""] == before[""] and after["-wal"] == before["-wal"]
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE id = ?", (fresh.id,)).fetchone() == (
            1,
        )
    finally:
        conn.close()


async def test_a_running_worker_stops_when_it_meets_damage(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    clock = FakeClock()
    await make_db(path, clock=clock, delay=3600)
    app = App(f"sqlite:///{path}", clock=clock)
    app.task("archive.keep", queue="archive")(lambda data: None)
    started = asyncio.Event()
    app.events.subscribe(lambda _: started.set(), [EventName.WORKER_STARTED])
    worker = Worker(app, settings=WorkerSettings(poll_interval=0.02, shutdown_grace=0.1))
    async with app:
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)  # the start-up check passed
        damage_job_data(path)
        touch_from_outside(path)  # the worker re-reads pages it may have cached
        clock.advance(7200)  # the jobs fall due; claiming them reads the damage
        with pytest.raises(StorageCorrupt):
            await asyncio.wait_for(running, 10)
    assert worker.stats["completed"] == 0


@pytest.mark.parametrize("kind", ["every page", "not a database"])
@pytest.mark.parametrize(
    "command", [["jobs", "list"], ["dlq", "list"], ["stats"], ["dlq", "stats"]], ids=" ".join
)
def test_read_commands_on_a_damaged_file_print_one_line(
    db: Path, capsys: pytest.CaptureFixture[str], kind: str, command: list[str]
) -> None:
    DAMAGE[kind](db)
    code, _, err = cli(capsys, *command)
    assert code == 1
    assert err.strip() == the_error_line(err, db)


def test_only_the_worker_runs_the_integrity_check(
    db: Path, capsys: pytest.CaptureFixture[str], quick_checks: list[str]
) -> None:
    for command in (["jobs", "list"], ["dlq", "list"], ["stats"], ["dlq", "stats"]):
        code, _, err = cli(capsys, *command)
        assert code == 0, err
    code, _, err = cli(capsys, "enqueue", "demo.generate", "--data", '{"prompt": "cat"}')
    assert code == 0, err
    assert quick_checks == []
    code, _, err = cli(capsys, "worker", "--burst", "--log-level", "error")
    assert code == 0, err
    assert quick_checks == ["quick_check"]


async def test_the_check_runs_once_per_open(tmp_path: Path, quick_checks: list[str]) -> None:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}")
    async with app:
        await app.backend.check_integrity()
        await app.backend.check_integrity()
    assert quick_checks == ["quick_check"]


def test_damage_is_recognised_by_code_and_by_message() -> None:
    assert integrity.is_damage(sqlite3.DatabaseError("database disk image is malformed"))
    assert integrity.is_damage(sqlite3.DatabaseError("file is not a database"))
    assert not integrity.is_damage(sqlite3.OperationalError("database is locked"))
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.Error) as raised:
        conn.execute("SELECT * FROM missing")
    assert not integrity.is_damage(raised.value)
