"""``genqueue alerts test`` and ``alerts enable`` against a real local receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from genqueue.cli.main import run
from tests.observability.receiver import SECRET, LocalReceiver, spec_verify


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENQUEUE_BACKEND", f"sqlite:///{tmp_path / 'cli.db'}")
    for name in (
        "GENQUEUE_APP",
        "GENQUEUE_SETTINGS",
        "GENQUEUE_WEBHOOK_URL",
        "GENQUEUE_WEBHOOK_SECRET",
        "GENQUEUE_SLACK_WEBHOOK_URL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def settings_file(tmp_path: Path, hook_url: str, slack_url: str) -> str:
    path = tmp_path / "genqueue.toml"
    path.write_text(
        f"""
[[notify.targets]]
name = "ops"
type = "webhook"
url = "{hook_url}"
secret = "{SECRET}"
min_severity = "critical"

[[notify.targets]]
name = "oncall"
type = "slack"
url = "{slack_url}"
"""
    )
    return str(path)


def test_without_targets_it_says_how_to_configure_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "alerts", "test")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "GENQUEUE_WEBHOOK_URL" in err and "[[notify.targets]]" in err


def test_every_target_gets_a_signed_test_notification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        LocalReceiver().serve("/hook") as hook,
        LocalReceiver().serve("/services/T0/B0/slacksecrettoken") as slack,
    ):
        path = settings_file(tmp_path, hook.url, slack.url)
        code, out, err = cli(capsys, "alerts", "test", "--settings", path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TARGET", "TYPE", "URL", "RESULT", "DETAIL"]
    assert lines[1].split()[:2] == ["ops", "webhook"]
    assert lines[1].split()[3:] == ["delivered", "HTTP", "200"]
    assert lines[2].split()[:2] == ["oncall", "slack"]
    assert "/services/[REDACTED]" in lines[2]
    assert "slacksecrettoken" not in out + err and SECRET not in out + err
    # ops has min_severity critical and still gets the test.
    [request] = hook.requests
    spec_verify(SECRET, request.headers, request.body, now=time.time())
    assert Webhook(SECRET).verify(request.body, request.headers)["type"] == "genqueue.test"
    [message] = slack.requests
    assert message.json()["text"].startswith("[TEST] genqueue test notification")


def test_a_failing_target_fails_the_command_after_one_attempt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalReceiver(500).serve() as hook, LocalReceiver().serve() as slack:
        monkeypatch.setenv("GENQUEUE_SETTINGS", settings_file(tmp_path, hook.url, slack.url))
        code, out, _ = cli(capsys, "alerts", "test", "--json")
    assert code == 1
    results = {r["target"]: r for r in json.loads(out)["results"]}
    assert results["ops"]["outcome"] == "failed" and results["ops"]["status_code"] == 500
    assert results["ops"]["attempts"] == 1 and len(hook.requests) == 1
    assert results["oncall"]["outcome"] == "delivered"
    assert results["oncall"]["url"].endswith("/[REDACTED]")
    assert set(results["ops"]) == {
        "target",
        "type",
        "outcome",
        "attempts",
        "status_code",
        "error",
        "url",
    }


def test_a_target_that_answers_410_stays_disabled_until_enabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalReceiver((410, "channel_is_archived")).serve("/services/T/B/tok") as slack:
        monkeypatch.setenv("GENQUEUE_SLACK_WEBHOOK_URL", slack.url)
        code, out, _ = cli(capsys, "alerts", "test")
        assert code == 1 and "disabled" in out and "HTTP 410: channel_is_archived" in out
        # A new process (each run opens the backend afresh) does not send again.
        code, out, _ = cli(capsys, "alerts", "test")
        assert code == 1 and "genqueue alerts enable slack" in out
        assert len(slack.requests) == 1

        code, out, _ = cli(capsys, "alerts", "enable", "slack")
        assert code == 0 and out.strip() == "slack: enabled again"
        code, out, _ = cli(capsys, "alerts", "test")
        assert code == 0 and "delivered" in out
        assert len(slack.requests) == 2
    code, out, _ = cli(capsys, "alerts", "enable", "slack", "--json")
    assert code == 0 and json.loads(out) == {"target": "slack", "was_disabled": False}


def test_bad_settings_are_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[notify.targets]]\nname = "ops"\ntype = "webhook"\nurl = "https://x.example"\n'
    )
    code, out, err = cli(capsys, "alerts", "test", "--settings", str(path))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "notify.targets[0].secret" in err and "Traceback" not in err
