"""The CLI: every command, --json shapes, and errors as one line with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genqueue.cli.main import run


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("GENQUEUE_BACKEND", url)
    monkeypatch.delenv("GENQUEUE_APP", raising=False)
    return url


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def enqueue(capsys: pytest.CaptureFixture[str], scenario: str, **extra: str) -> str:
    args = [
        "enqueue",
        "demo.generate",
        "--data",
        json.dumps({"scenario": scenario, "prompt": "cat"}),
    ]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    job = cli_json(capsys, *args)
    assert isinstance(job, dict)
    return str(job["id"])


def work(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "worker", "--burst", "--concurrency", "4", "--log-level", "error")
    assert code == 0, err


def test_enqueue_show_and_list(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = enqueue(capsys, "ok", user="u1", max_retries="3")
    job = cli_json(capsys, "job", "show", job_id)
    assert isinstance(job, dict)
    assert job["state"] == "queued" and job["user_id"] == "u1" and job["max_retries"] == 3
    assert job["created_at"].endswith("Z")
    work(capsys)
    job = cli_json(capsys, "job", "show", job_id)
    assert (
        isinstance(job, dict) and job["state"] == "completed" and job["result"]["prompt"] == "cat"
    )
    assert [a["outcome"] for a in job["history"]] == ["completed"]
    listed = cli_json(capsys, "jobs", "list", "--state", "completed")
    assert isinstance(listed, dict) and [j["id"] for j in listed["items"]] == [job_id]
    code, out, _ = cli(capsys, "job", "show", job_id)
    assert code == 0 and job_id in out and "completed" in out


def test_stable_json_field_names(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = enqueue(capsys, "bad_key")
    job = cli_json(capsys, "job", "show", job_id)
    assert isinstance(job, dict)
    assert set(job) >= {
        "id", "task", "queue", "data", "user_id", "idempotency_key", "state", "created_at",
        "updated_at", "run_at", "attempts", "retry_count", "max_retries", "redrive_count",
        "lease_owner", "lease_expires_at", "last_error", "history", "remote_job_id", "result",
        "progress", "finished_at", "cost",
    }  # fmt: skip
    work(capsys)
    entry = cli_json(capsys, "dlq", "show", job_id)
    assert isinstance(entry, dict)
    assert set(entry) >= {
        "job_id", "user_id", "queue", "task", "original_job", "failure_reason", "error_kind",
        "failed_at", "retry_attempts", "last_error", "remote_job_id", "history", "fingerprint",
        "redrive_count", "expires_at", "cost",
    }  # fmt: skip
    assert entry["error_kind"] == "auth" and entry["original_job"]["id"] == job_id


def test_dlq_workflow(db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dead = [enqueue(capsys, "bad_key", user="alice") for _ in range(3)]
    other = enqueue(capsys, "bad_prompt", user="bob")
    work(capsys)
    listed = cli_json(capsys, "dlq", "list", "--user", "alice")
    assert isinstance(listed, dict) and {e["job_id"] for e in listed["items"]} == set(dead)
    stats = cli_json(capsys, "dlq", "stats")
    assert (
        isinstance(stats, dict)
        and stats["total"] == 4
        and stats["by_error_kind"] == {"auth": 3, "validation": 1}
    )
    dry = cli_json(capsys, "dlq", "retry", "--all", "--kind", "auth", "--dry-run")
    assert isinstance(dry, dict) and dry["dry_run"] and dry["redriven"] == 3
    code, _, err = cli(capsys, "dlq", "retry", "--all", "--kind", "auth")
    assert code == 1 and "without --yes" in err and err.count("\n") == 1
    done = cli_json(capsys, "dlq", "retry", "--all", "--kind", "auth", "--yes")
    assert isinstance(done, dict) and sorted(done["redriven_ids"]) == sorted(dead)
    one = cli_json(capsys, "dlq", "retry", other)
    assert isinstance(one, dict) and one["redriven_ids"] == [other]
    work(capsys)
    out_file = tmp_path / "dlq.csv"
    code, out, _ = cli(capsys, "dlq", "export", "--format", "csv", "--output", str(out_file))
    assert code == 0 and "exported 4 entries" in out
    assert out_file.read_text().count("\n") == 5
    code, out, _ = cli(capsys, "dlq", "export")
    assert code == 0 and len(out.splitlines()) == 4
    deleted = cli_json(capsys, "dlq", "delete", dead[0])
    assert isinstance(deleted, dict) and deleted["deleted"] == [dead[0]]
    purged = cli_json(capsys, "dlq", "purge", "--user", "alice", "--yes")
    assert isinstance(purged, dict) and purged["count"] == 2
    expired = cli_json(capsys, "dlq", "purge", "--expired")
    assert isinstance(expired, dict) and expired["count"] == 0
    counts = cli_json(capsys, "stats")
    assert isinstance(counts, dict) and counts["dead_letters"] == 1


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["enqueue", "demo.generate", "--data", "{not json"], "data is not valid JSON", 1),
        (["enqueue", "no.such.task", "--data", "{}"], "unknown task 'no.such.task'", 1),
        (["enqueue", "demo.generate", "--data", "{}", "--delay", "-5"], "delay must be >= 0", 1),
        (
            ["enqueue", "demo.generate", "--data", "{}", "--max-retries", "-1"],
            "max_retries must be between",
            1,
        ),
        (
            ["enqueue", "demo.generate", "--data", "{}", "--max-retries", "100000"],
            "max_retries must be between",
            1,
        ),
        (["enqueue", "demo.generate", "--data", '{"api_key": "sk-x"}'], "looks like a secret", 1),
        (["job", "show", "xyz"], "32 hexadecimal characters", 1),
        (["job", "show", "0" * 32], "no job with id", 3),
        (["dlq", "show", "0" * 32], "no dead letter entry", 3),
        (["dlq", "retry", "0" * 32], "not found in the dead letter queue", 3),
        (["dlq", "list", "--kind", "bogus"], "invalid --kind 'bogus'", 1),
        (["dlq", "list", "--since", "yesterday-ish"], "invalid since", 1),
        (["dlq", "list", "--cursor", "!!"], "invalid cursor", 1),
        (["dlq", "export", "--format", "xml"], "use jsonl or csv", 1),
        (["jobs", "list", "--state", "sleeping"], "valid states", 1),
        (["jobs", "list", "--limit", "0"], "limit must be", 1),
        (["worker", "--app", "nope_module:app", "--burst"], "cannot import 'nope_module'", 1),
        (["worker", "--backend", "mysql://x", "--burst"], "unsupported backend URL", 1),
    ],
)
def test_errors_are_one_line_and_store_nothing(
    db: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str, code: int
) -> None:
    got, out, err = cli(capsys, *args)
    assert got == code
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err + out
    counts = cli_json(capsys, "stats")
    assert isinstance(counts, dict)
    assert counts["queues"] == {} and counts["dead_letters"] == 0


def test_usage_errors_exit_2(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "enqueue")
    assert code == 2 and "Missing argument" in err and "Traceback" not in err


def test_user_app_by_import_path(
    db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myjobs.py").write_text(
        "from genqueue import App\n"
        "app = App()\n"
        "@app.task('shout')\n"
        "async def shout(ctx):\n"
        "    return ctx.data['text'].upper()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENQUEUE_APP", "myjobs:app")
    job = cli_json(capsys, "enqueue", "shout", "--data", '{"text": "hi"}')
    assert isinstance(job, dict)
    work(capsys)
    done = cli_json(capsys, "job", "show", job["id"])
    assert isinstance(done, dict) and done["result"] == "HI"


def test_demo_accounts_for_every_job(
    db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli(
        capsys, "demo", "--jobs", "30", "--output", str(tmp_path / "sprites"), "--seed", "3"
    )
    assert code == 0, err
    assert "every job accounted for" in out
    assert len(list((tmp_path / "sprites").rglob("*.png"))) >= 20
    listed = cli_json(capsys, "jobs", "list", "--queue", "pixellab", "--limit", "100")
    assert isinstance(listed, dict) and len(listed["items"]) == 30
    assert {j["state"] for j in listed["items"]} <= {"completed", "dead"}


def test_fake_pixellab_rejects_bad_options(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "fake-pixellab", "--preset", "nope")
    assert code == 1 and "unknown --preset" in err
    code, _, err = cli(capsys, "fake-pixellab", "--host", "0.0.0.0")
    assert code == 1 and "loopback" in err


def test_demo_summary_fails_on_a_lost_job_or_a_double_charge() -> None:
    """CI runs the demo: a missing job or a job charged twice must turn it red."""
    from collections import Counter

    from genqueue.cli.demo import _print
    from genqueue.providers.pixellab.demo import DemoReport

    fake = {
        "submits_by_operation": {"generate-image-v2": 2},
        "charges": 2,
        "total_charged_usd": 0.02,
        "charges_by_client_job": {"a": 1, "b": 1},
        "errors": {"429": 0, "5xx": 0},
        "dropped_connections": 0,
    }
    good = DemoReport(total=2, states=Counter(completed=2))
    assert _print(good, fake) is True
    assert _print(DemoReport(total=3, states=Counter(completed=2)), fake) is False
    assert _print(good, {**fake, "charges_by_client_job": {"a": 2}}) is False
