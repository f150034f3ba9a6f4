"""``enqueue --data`` takes JSON inline, from a file (``@file.json``) or stdin (``-``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, as_json


def test_data_from_a_file(cli: Runner, fresh_db: str, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text('{"scenario": "ok", "prompt": "a knight"}\n', encoding="utf-8")
    job = as_json(cli("enqueue", "demo.generate", "--data", f"@{path}", "--json"))
    assert isinstance(job, dict) and job["data"] == {"scenario": "ok", "prompt": "a knight"}


def test_data_from_stdin(cli: Runner, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"prompt": "from a pipe"}'))
    job = as_json(cli("enqueue", "demo.generate", "--data", "-", "--json"))
    assert isinstance(job, dict) and job["data"] == {"prompt": "from a pipe"}


@pytest.mark.parametrize(
    ("content", "arg", "message"),
    [
        (None, "@{dir}/missing.json", "--data @{dir}/missing.json: no such file"),
        ("{not json", "@{dir}/bad.json", "data in {dir}/bad.json is not valid JSON"),
        (None, "@{dir}", "cannot read it"),
        ("", "-", "data (standard input) is not valid JSON"),
    ],
)
def test_bad_data_is_one_line_and_stores_nothing(
    cli: Runner,
    fresh_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    arg: str,
    message: str,
) -> None:
    if arg == "-":
        monkeypatch.setattr("sys.stdin", io.StringIO(content or ""))
    elif content is not None:
        (tmp_path / "bad.json").write_text(content, encoding="utf-8")
    code, _out, err = cli("enqueue", "demo.generate", "--data", arg.format(dir=tmp_path))
    assert code == 1 and message.format(dir=tmp_path) in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    listed = as_json(cli("jobs", "list", "--json"))
    assert listed == {"items": [], "next_cursor": None}
