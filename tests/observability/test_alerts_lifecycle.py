"""The alert lifecycle: the repeat schedule, stable ids, history, rules turned off or
failing, and how the stored record survives evaluators of different settings."""

from __future__ import annotations

import pytest

from genqueue import App, FakeClock
from genqueue.observability.alerts import (
    STATE_KEY,
    AlertContext,
    Check,
    DlqSize,
    Round,
    advance,
    read_alerts,
)
from genqueue.observability.alerts.state import AlertsState
from genqueue.observability.notify import notification_id
from genqueue.serialization import iso
from tests.conformance.helpers import make_dead
from tests.observability.alerts_support import evaluator, only

HOUR = 3600.0


async def test_repeats_every_4_hours_by_default_with_stable_ids(app: App, clock: FakeClock) -> None:
    ev, rec = evaluator(app, only(DlqSize(threshold=0)))
    await make_dead(app, 1)
    await ev.step()
    fired_at = clock.now()
    for _ in range(2):
        clock.advance(4 * HOUR - 30)
        await ev.step()
        clock.advance(30)
        await ev.step()
    assert rec.statuses() == ["firing", "repeat", "repeat"]
    assert [n.fields["repeats"] for n in rec.sent] == [0, 1, 2]
    assert [n.id for n in rec.sent] == [
        notification_id("alert", "dlq_size", fired_at, "firing", 0),
        notification_id("alert", "dlq_size", fired_at, "repeat", 1),
        notification_id("alert", "dlq_size", fired_at, "repeat", 2),
    ]
    assert rec.sent[1].summary.endswith(f"Firing since {iso(fired_at)}.")


async def test_history_is_bounded_and_a_new_firing_is_a_new_alert(
    app: App, clock: FakeClock
) -> None:
    ev, rec = evaluator(app, only(DlqSize(threshold=0), history=2))
    for _ in range(3):
        ids = await make_dead(app, 1)
        await ev.step()
        clock.advance(60)
        await app.dlq.delete(ids[0])
        await ev.step()
        clock.advance(60)
    assert rec.statuses() == ["firing", "resolved"] * 3
    assert len({n.id for n in rec.sent}) == 6
    state = await read_alerts(app.backend)
    assert state.active == {}
    assert [r.fired_at for r in state.history] == [
        clock.now() - 120,
        clock.now() - 240,
    ]  # newest first, the oldest dropped
    assert state.history[0].resolved_at == clock.now() - 60
    assert state.outbox == []  # everything was delivered


async def test_a_rule_turned_off_resolves_its_alert(app: App) -> None:
    ev, rec = evaluator(app, only(DlqSize(threshold=0)))
    await make_dead(app, 1)
    await ev.step()
    off, rec_off = evaluator(app, only(DlqSize(threshold=0, enabled=False)), holder="w1")
    await off.step()
    assert rec.statuses() == ["firing"]
    assert rec_off.statuses() == ["resolved"]
    assert rec_off.sent[0].summary.startswith("The rule was turned off in the settings.")


async def test_a_rule_that_fails_keeps_its_alert_until_it_can_be_evaluated(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ev, rec = evaluator(app, only(DlqSize(threshold=0)))
    await make_dead(app, 1)
    await ev.step()

    async def broken(self: DlqSize, ctx: AlertContext) -> Check:
        raise ConnectionError("storage briefly away")

    monkeypatch.setattr(DlqSize, "check", broken)
    report = await ev.step()
    assert report.errors == {"dlq_size": "ConnectionError"}
    assert "dlq_size" in (await read_alerts(app.backend)).active
    assert rec.statuses() == ["firing"]  # neither resolved nor fired again


def test_advance_is_pure_and_resolves_only_what_it_checked() -> None:
    state = AlertsState()
    rule = DlqSize(threshold=1)
    fired = advance(state, Round(100.0, "w1", {"dlq_size": (rule, Check(True, 5, "5"))}))
    assert [n.status.value for n in fired] == ["firing"]
    # A round that did not check the rule (another worker's settings) leaves it alone.
    assert advance(state, Round(200.0, "w2", {})) == []
    assert "dlq_size" in state.active and state.evaluator == "w2"
    resolved = advance(state, Round(300.0, "w1", {"dlq_size": (rule, Check(False, 0, "0"))}))
    assert [n.status.value for n in resolved] == ["resolved"]
    assert len(state.outbox) == 2
    assert AlertsState.from_json(state.to_json()).to_json() == state.to_json()


async def test_a_record_from_a_newer_version_is_read(app: App) -> None:
    ev, _ = evaluator(app, only(DlqSize(threshold=0)))
    await make_dead(app, 1)
    await ev.step()
    raw, version = await app.backend.state_get(STATE_KEY) or ({}, 0)
    raw["active"]["dlq_size"]["added_later"] = 1
    raw["something_new"] = True
    assert await app.backend.state_put(STATE_KEY, raw, expect_version=version)
    state = await read_alerts(app.backend)
    assert state.active["dlq_size"].value == 1
