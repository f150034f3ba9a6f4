"""Every table reads at 80 columns (and uses the room at 160): short ids, one line per
row, no line wider than the terminal, the key content present; ``--json`` keeps it all."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Runner, as_json
from tests.cli.sample_app import ACCOUNT, SNOOZES

WIDTHS = [80, 160]


def lines_fit(text: str, width: int) -> None:
    assert text.strip(), "nothing printed"
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"


@pytest.mark.parametrize("width", WIDTHS)
def test_dlq_list(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("dlq", "list", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    rows = [
        line
        for line in out.splitlines()
        if line[:12] in (sample["invalid"][:12], sample["snoozy"][:12])
    ]
    assert len(rows) == 2  # one line per entry, led by its short id
    assert sample["invalid"] not in out  # never the whole 32 characters
    assert "validation" in out and "payment" in out and "the provider answered 422" in out
    wide_only = ("images.generate-a-very-", "REDRIVES", "FINGERPRINT")
    assert all((word in out) == (width >= 160) for word in wide_only)


@pytest.mark.parametrize("width", WIDTHS)
def test_jobs_list(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("jobs", "list", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    for name in ("ok", "invalid", "flaky", "snoozy", "scheduled"):
        assert sample[name][:12] in out and sample[name] not in out
    assert "retrying in" in out and "scheduled in" in out  # when a waiting job runs
    assert "completed" in out and "dead" in out
    assert ("images.generate-a-very-" in out) == (width >= 160)  # cut: any length is legal


@pytest.mark.parametrize("width", WIDTHS)
def test_stats(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("stats", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    assert "COMPLETED" in out and "CANCELLED" in out and "images" in out
    assert f"provider {ACCOUNT}: circuit open (auth)" in out
    assert "(at most 8 at once)" in out  # the in-flight limit is a whole number, labelled
    # 3 x $0.0123 and 3 x 1/3 generation, read naturally (no "1 generations", no 0.9999).
    assert "spend: $0.04, 1 generation; wasted: $0.01, 0.3 generations" in out
    assert "alice" in out and "a-user-with-a-rather" in out  # cut to fit at 80


@pytest.mark.parametrize("width", WIDTHS)
def test_dlq_stats(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("dlq", "stats", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    assert out.startswith("2 dead letter entries")
    assert "top failures" in out and "SAMPLE MESSAGE" in out and "insufficient credits" in out
    assert ("TaskError" in out) == (width >= 160)


@pytest.mark.parametrize("width", WIDTHS)
def test_job_show_explains_merged_snoozes(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("job", "show", sample["snoozy"], columns=width)
    assert code == 0, err
    lines_fit(out, width)
    assert sample["snoozy"] in out  # the detail view shows the whole id
    # Attempts 1..SNOOZES waited for the same reason: one row says so, then the failure.
    assert f"1-{SNOOZES}" in out and f"rate limit cooldown x{SNOOZES}, waited" in out
    assert f"{SNOOZES + 1}  " in out and "payment: insufficient credits" in out
    words = " ".join(out.split())
    assert "one row for waits in a row with the same reason (every fetch of a job" in words
    assert f"{SNOOZES + 1} ({SNOOZES} snoozes: waits that spend no retry)" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_dlq_show_and_long_messages(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("dlq", "show", sample["invalid"][:8], columns=width)
    assert code == 0, err
    lines_fit(out, width)
    # The whole message is in the detail view, wrapped, not cut.
    words = " ".join(out.split())
    assert "shorten it or pick another model" in words


@pytest.mark.parametrize("width", WIDTHS)
def test_breaker_list(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("breaker", "list", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    assert ACCOUNT in out and "open" in out and "auth" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_dry_run_sample_table(cli: Runner, sample: dict[str, str], width: int) -> None:
    code, out, err = cli("dlq", "retry", "--all", "--dry-run", columns=width)
    assert code == 0, err
    lines_fit(out, width)
    assert out.startswith("would redrive: 2 of 2 matching entries")
    assert sample["invalid"][:12] in out


def test_json_keeps_full_values(cli: Runner, sample: dict[str, str]) -> None:
    listed = as_json(cli("dlq", "list", "--json", columns=80))
    assert isinstance(listed, dict)
    assert {e["job_id"] for e in listed["items"]} == {sample["invalid"], sample["snoozy"]}
    entry = next(e for e in listed["items"] if e["job_id"] == sample["invalid"])
    assert entry["last_error"]["message"].endswith("pick another model")
    jobs = as_json(cli("jobs", "list", "--json", columns=80))
    assert isinstance(jobs, dict) and sample["ok"] in {j["id"] for j in jobs["items"]}


def test_jobs_list_by_creation_time(cli: Runner, sample: dict[str, str]) -> None:
    everything = as_json(cli("jobs", "list", "--json", "--since", "3650d"))
    assert isinstance(everything, dict) and len(everything["items"]) >= 5
    future = as_json(cli("jobs", "list", "--json", "--since", "2999-01-01T00:00:00Z"))
    assert future == {"items": [], "next_cursor": None}
