"""``worker --burst`` waits for retries and snoozes due within ``--burst-horizon`` seconds,
and when it stops it says what it left."""

from __future__ import annotations

from tests.cli.conftest import Runner, as_json


def enqueue(cli: Runner, scenario: str, *extra: str) -> str:
    data = f'{{"scenario": "{scenario}"}}'
    job = as_json(cli("enqueue", "demo.generate", "--data", data, *extra, "--json"))
    assert isinstance(job, dict)
    return str(job["id"])


def state(cli: Runner, job_id: str) -> str:
    job = as_json(cli("job", "show", job_id, "--json"))
    assert isinstance(job, dict)
    return str(job["state"])


def test_a_burst_waits_for_a_retry_due_soon(cli: Runner, fresh_db: str) -> None:
    flaky = enqueue(cli, "flaky_server")  # fails once; its retry is due 0.2 s later
    snoozed = enqueue(cli, "ok", "--delay", "0.3")
    code, out, err = cli("worker", "--burst", "--log-level", "error")
    assert code == 0, err
    assert state(cli, flaky) == "completed" and state(cli, snoozed) == "completed"
    assert "left" not in out


def test_a_burst_leaves_later_jobs_and_says_so(cli: Runner, fresh_db: str) -> None:
    later = enqueue(cli, "ok", "--delay", "120")
    enqueue(cli, "ok", "--delay", "600")
    now = enqueue(cli, "ok")
    code, out, err = cli("worker", "--burst", "--log-level", "error")
    assert code == 0, err
    assert state(cli, now) == "completed" and state(cli, later) == "scheduled"
    assert "left 2 jobs scheduled later than 5 s: next in 2 min" in out


def test_a_zero_horizon_stops_at_once(cli: Runner, fresh_db: str) -> None:
    soon = enqueue(cli, "ok", "--delay", "3")
    code, out, err = cli("worker", "--burst", "--burst-horizon", "0", "--log-level", "error")
    assert code == 0, err
    assert state(cli, soon) == "scheduled"
    assert "left 1 job scheduled later than 0 s: next in" in out


def test_the_horizon_is_checked(cli: Runner, fresh_db: str) -> None:
    code, _, err = cli("worker", "--burst", "--burst-horizon", "-1")
    assert code == 1 and "--burst-horizon must be between 0 and 86400 seconds" in err
