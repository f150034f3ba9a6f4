"""``genqueue alerts list``, ``dlq show`` marking entries opened, and the worker wiring:
``genqueue worker`` reads the alert settings, and a running worker evaluates them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, FakeClock, Worker, WorkerSettings
from genqueue.cli.main import run
from genqueue.cli.worker import alert_evaluator
from genqueue.observability.alerts import (
    LEADER_KEY,
    SEEN_KEY,
    AlertEvaluator,
    DlqGrowth,
    DlqSize,
)
from genqueue.observability.notify import DeliveryResult, Notification
from genqueue.providers.breaker import list_breakers
from tests.conformance.helpers import make_dead
from tests.observability.alerts_support import evaluator, only


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    monkeypatch.setenv("GENQUEUE_BACKEND", url)
    for name in (
        "GENQUEUE_APP",
        "GENQUEUE_SETTINGS",
        "GENQUEUE_ALERTS",
        "GENQUEUE_WEBHOOK_URL",
        "GENQUEUE_WEBHOOK_SECRET",
        "GENQUEUE_SLACK_WEBHOOK_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return url


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_firing_one_resolved(url: str) -> None:
    """A firing dlq_size alert and a resolved dlq_growth alert, stored in ``url``."""

    async def go() -> None:
        async with App(url) as app:
            ev, _ = evaluator(app, only(DlqSize(threshold=1), DlqGrowth(threshold=0)))
            await make_dead(app, 2)
            await ev.step()
            ev.settings = only(DlqSize(threshold=1), DlqGrowth(threshold=5))
            await ev.step()

    asyncio.run(go())


def test_alerts_list_shows_active_and_recent_alerts(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "alerts", "list")
    assert code == 0 and out.startswith("no alert evaluation yet")
    one_firing_one_resolved(db)

    code, out, err = cli(capsys, "alerts", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("evaluated ") and lines[0].endswith(" by w1")
    assert lines[1].split() == [
        "RULE",
        "SEVERITY",
        "STATE",
        "SINCE",
        "VALUE",
        "THRESHOLD",
        "SUMMARY",
    ]
    firing, resolved = lines[2].split(), lines[3].split()
    assert firing[:3] == ["dlq_size", "warning", "firing"]
    assert resolved[:4] == ["dlq_growth", "warning", "resolved", "0"]
    assert "2 entries in the dead letter queue (threshold 1)." in lines[2]

    code, out, _ = cli(capsys, "alerts", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["evaluator"] == "w1" and listed["evaluated_at"].endswith("Z")
    [active] = listed["active"]
    assert {k: active[k] for k in ("rule", "severity", "state", "value", "threshold")} == {
        "rule": "dlq_size",
        "severity": "warning",
        "state": "firing",
        "value": 2,
        "threshold": 1,
    }
    assert active["since"].endswith("Z") and active["resolved_at"] is None
    [recent] = listed["recent"]
    assert recent["rule"] == "dlq_growth" and recent["state"] == "resolved"
    assert recent["resolved_at"] is not None

    code, out, _ = cli(capsys, "alerts", "list", "--json", "--limit", "0")
    assert json.loads(out)["recent"] == []


def test_dlq_show_marks_the_entry_opened(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def dead() -> list[str]:
        async with App(db) as app:
            return await make_dead(app, 2)

    async def marks() -> dict[str, Any]:
        async with App(db) as app:
            found = await app.backend.state_get(SEEN_KEY)
            return found[0] if found else {}

    ids = asyncio.run(dead())
    code, _, err = cli(capsys, "dlq", "show", ids[0], "--json")
    assert code == 0, err
    assert list(asyncio.run(marks())) == [ids[0]]
    code, _, _ = cli(capsys, "dlq", "show", "0" * 32)
    assert code == 3 and list(asyncio.run(marks())) == [ids[0]]


# "--log-level error": the worker command sets up the root logger for the process, and a
# handler on this test's captured stderr must not see INFO records of later tests.
def test_worker_reads_the_alert_settings(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "genqueue.toml"
    path.write_text("[alerts.rules.dlq_size]\nthreshold = 'lots'\n")
    code, out, err = cli(
        capsys, "worker", "--burst", "--log-level", "error", "--settings", str(path)
    )
    assert code == 1 and out == ""
    assert err == f"error: {path}: alerts.rules.dlq_size.threshold: must be a number\n"

    path.write_text("[alerts]\nenabled = false\n")
    code, out, err = cli(
        capsys, "worker", "--burst", "--log-level", "error", "--settings", str(path)
    )
    assert code == 0, err
    assert "alerts off" in out.splitlines()[0]
    code, out, _ = cli(capsys, "worker", "--burst", "--log-level", "error", "--no-alerts")
    assert code == 0 and "alerts off" in out.splitlines()[0]
    monkeypatch.setenv("GENQUEUE_ALERTS", "off")
    code, out, _ = cli(capsys, "worker", "--burst", "--log-level", "error")
    assert code == 0 and "alerts off" in out.splitlines()[0]


def test_the_worker_evaluator_uses_the_file_and_the_provider_breakers(
    db: str, tmp_path: Path
) -> None:
    path = tmp_path / "genqueue.toml"
    path.write_text(
        """
[[notify.targets]]
name = "oncall"
type = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[alerts.rules.dlq_size]
threshold = 7
"""
    )
    app = App(db)
    found = alert_evaluator(app, str(path))
    assert found is not None
    assert found.settings.rule("dlq_size").threshold == 7
    assert found.breakers is list_breakers
    assert [t.name for t in found.notifier.targets] == ["oncall"]  # type: ignore[attr-defined]
    path.write_text("[alerts]\nenabled = false\n")
    assert alert_evaluator(app, str(path)) is None


class StopsTheWorker:
    """A dispatcher that stops the worker once it has been handed a notification."""

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.sent: list[Notification] = []

    async def dispatch(self, notification: Notification) -> list[DeliveryResult]:
        self.sent.append(notification)
        assert self.worker is not None
        self.worker.request_stop()
        return []


async def test_a_running_worker_evaluates_and_releases_the_lease_when_it_stops(
    clock: FakeClock, tmp_path: Path
) -> None:
    async with App(f"sqlite:///{tmp_path / 'w.db'}", clock=clock) as app:
        await make_dead(app, 1)
        dispatcher = StopsTheWorker()
        ev = AlertEvaluator(app, only(DlqSize(threshold=0)), notifier=dispatcher)
        settings = WorkerSettings(concurrency=1, poll_interval=0.01, sweep_interval=3600)
        worker = Worker(app, settings=settings, alerts=ev.run, worker_id="solo")
        dispatcher.worker = worker
        await asyncio.wait_for(worker.run(), timeout=30)
        assert [n.title for n in dispatcher.sent] == ["DLQ size above 0: 1"]
        assert ev.holder == "solo" and not ev.leader
        assert await app.backend.slot_count(LEADER_KEY) == 0
