"""Bad input at the edge: one line, exit 1, nothing stored or created, never a traceback.

Also what a command does with Redis: it gives up on an unreachable server within
seconds, naming the URL and what to check, and leaves the persistence warning to
workers (once per start).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genqueue.cli.common import load_app
from genqueue.cli.urls import CLI_REDIS_PATIENCE
from tests.cli.conftest import Runner, as_json
from tests.redis_server import free_port, redis_server_binary, redis_url_for_test


def one_line(code: int, err: str, message: str) -> None:
    assert code == 1, err
    assert message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dlq", "list", "-b", "sqlite:///x.db?journal=wal"], "unknown option 'journal'"),
        (["dlq", "list", "-b", "sqlite:///x.db?synchronous=maybe"], "invalid synchronous"),
        (["dlq", "list", "-b", "redis://127.0.0.1:1/0?bogus=1"], "unknown option 'bogus'"),
        (["dlq", "list", "-b", "redis://127.0.0.1:1/0?db=x"], "invalid Redis URL"),
        (["stats", "-b", "memory://"], "memory:// keeps jobs inside one process"),
        (["worker", "--burst", "-b", "memory://"], "use sqlite:///genqueue.db"),
        (["worker", "--burst", "-q", "bad queue"], "invalid queue name 'bad queue'"),
        (["worker", "--burst", "-q", "ok", "-q", "x" * 101], "invalid queue name"),
        (["dlq", "stats", "--top", "-1"], "--top must be between 0 and 1000, got -1"),
        (["jobs", "list", "--since", "yesterday"], "invalid since 'yesterday'"),
    ],
)
def test_bad_input_is_one_line(cli: Runner, fresh_db: str, args: list[str], message: str) -> None:
    code, _, err = cli(*args)
    one_line(code, err, message)


def test_a_sqlite_file_in_a_missing_directory_is_refused(
    cli: Runner, fresh_db: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing" / "dir"
    code, _, err = cli("enqueue", "demo.generate", "-b", f"sqlite:///{missing}/x.db")
    one_line(code, err, f"directory {missing} does not exist")
    assert not missing.parent.exists()  # nothing created behind the user's back
    code, _, err = cli("dlq", "list", "-b", f"sqlite:///{tmp_path}/x.db")  # an existing dir
    assert code == 0, err


def test_an_unreachable_redis_fails_fast_with_what_to_check(cli: Runner, fresh_db: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = cli("dlq", "list", "-b", url)
    one_line(code, err, f"Redis at {url} is unavailable")
    assert "check that Redis is running and reachable" in err


def test_commands_give_up_on_redis_sooner_than_workers() -> None:
    url = "redis://127.0.0.1:6379/0"
    impatient = load_app(None, url).backend
    assert impatient.options.retry_for == CLI_REDIS_PATIENCE["retry_for"]  # type: ignore[attr-defined]
    assert impatient.options.connect_timeout == CLI_REDIS_PATIENCE["connect_timeout"]  # type: ignore[attr-defined]
    patient = load_app(None, url, worker=True).backend
    assert patient.options.retry_for == 15.0  # type: ignore[attr-defined]
    chosen = load_app(None, url + "?retry_for=7").backend  # the URL's own setting wins
    assert chosen.options.retry_for == 7.0  # type: ignore[attr-defined]


def test_the_persistence_warning_is_for_workers_only(
    cli: Runner, fresh_db: str, tmp_path: Path
) -> None:
    redis_server_binary()  # skips without redis-server (fails under CI)
    url = redis_url_for_test()  # the test server runs without persistence
    job = as_json(cli("enqueue", "demo.generate", "--data", "{}", "-b", url, "--json"))
    assert isinstance(job, dict)
    for args in (["dlq", "list"], ["jobs", "list"], ["stats"], ["job", "show", job["id"]]):
        code, _, err = cli(*args, "-b", url)
        assert code == 0 and err == "", (args, err)
    genqueue = Path(sys.executable).with_name("genqueue")
    env = {**os.environ, "GENQUEUE_BACKEND": url}
    worker = subprocess.run(
        [str(genqueue), "worker", "--burst", "--log-level", "warning"],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert worker.stderr.count("has persistence off") == 1
