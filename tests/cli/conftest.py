"""Fixtures of the CLI tests: a database holding every shape of job, and a CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from genqueue.cli.main import run
from tests.cli.sample_app import populate

Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A SQLite file filled by ``sample_app.populate`` (made once per module)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sample') / 'sample.db'}"
    return url, populate(url)


@pytest.fixture
def sample(
    sample_db: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point the CLI at the sample database and app; return its job ids by name."""
    url, ids = sample_db
    monkeypatch.setenv("GENQUEUE_BACKEND", url)
    monkeypatch.setenv("GENQUEUE_APP", "tests.cli.sample_app:app")
    return ids


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Runner:
    """Run the CLI in this process: ``cli(*args, columns=80)`` -> (code, stdout, stderr)."""

    def invoke(*args: str, columns: int | None = None) -> tuple[int, str, str]:
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", str(columns))
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def as_json(result: tuple[int, str, str]) -> object:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty SQLite file for the built-in app."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GENQUEUE_BACKEND", url)
    monkeypatch.delenv("GENQUEUE_APP", raising=False)
    return url
