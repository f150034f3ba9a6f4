"""Output reads naturally: plurals, amounts, durations; bulk deletes ask first."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from genqueue.classify import ErrorKind
from genqueue.cli.demo import _money, demo_command
from genqueue.cli.dlq import ERROR_KINDS
from genqueue.humanize import amount, amounts, number, plural, seconds
from tests.cli.conftest import Runner, as_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (plural(1, "generation"), "1 generation"),
        (plural(2, "generation"), "2 generations"),
        (plural(0.9999999, "generation"), "1 generation"),
        (plural(1, "entry"), "1 entry"),
        (plural(3, "entry"), "3 entries"),
        (number(2.9), "2.9"),
        (number(3.0), "3"),
        (number(102.841), "103"),
        (number(12_000), "12,000"),
        (amount(1, "generations"), "1 generation"),
        (amount(0.0909091, "generations"), "0.1 generations"),
        (amount(4.75, "usd"), "$4.75"),
        (amount(0.000909, "usd"), "$0.00091"),
        (amounts({"usd": 1.02841, "generations": 102.841}), "$1.03, 103 generations"),
        (amounts({}), "0"),
        (seconds(0.0072), "7 ms"),
        (seconds(1.615), "1.6 s"),
        (seconds(37.2), "37 s"),
        (seconds(2400), "40 min"),
        (_money({"usd": 0.01, "generations": 1}), "$0.01 (1 generation)"),
    ],
)
def test_words(text: str, expected: str) -> None:
    assert text == expected


def test_the_kinds_in_help_are_the_classifier_kinds() -> None:
    assert list(ERROR_KINDS) == [kind.value for kind in ErrorKind]


def dead(cli: Runner, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        job = as_json(
            cli("enqueue", "demo.generate", "--data", '{"scenario": "bad_key"}', "--json")
        )
        assert isinstance(job, dict)
        ids.append(job["id"])
    assert cli("worker", "--burst", "--log-level", "error")[0] == 0
    return ids


def test_deleting_several_entries_asks_first(cli: Runner, fresh_db: str) -> None:
    a, b, c = dead(cli, 3)
    code, out, err = cli("dlq", "delete", a, b)  # stdin is not a terminal: refused
    assert code == 1 and "Delete 2 entries of the dead letter queue for good?" in err
    assert "Refusing without --yes" in err and err.count("\n") == 1
    assert as_json(cli("dlq", "stats", "--json"))["total"] == 3  # type: ignore[index]
    code, out, err = cli("dlq", "delete", a, b, "--yes")
    assert code == 0 and out.strip() == "deleted 2 entries", err
    code, out, err = cli("dlq", "delete", c[:6])  # one entry: no question
    assert code == 0 and out.strip() == "deleted 1 entry", err


def test_the_demo_output_folder_is_ignored_by_git() -> None:
    default = inspect.signature(demo_command).parameters["output"].default
    root = Path(__file__).resolve().parents[2]
    ignored = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert f"{default}/" in ignored


def test_the_alerts_settings_variable_is_the_settings_one() -> None:
    from genqueue.cli.alerts import SETTINGS_ENV
    from genqueue.observability.notify.config import SETTINGS_ENV as REAL

    assert SETTINGS_ENV == REAL
