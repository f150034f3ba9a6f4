"""Every alert rule fires, repeats on its schedule and resolves, under a fake clock.

Evaluation is driven one round at a time (``AlertEvaluator.step``); nothing sleeps. The
thresholds are set low through the rules' settings, which also shows they are honoured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from genqueue import App, FakeClock
from genqueue.events import EventName
from genqueue.observability.alerts import (
    AlertEvaluator,
    BreakerOpen,
    DlqGrowth,
    DlqSize,
    DlqWriteFailure,
    OldestQueued,
    RetentionUnseen,
    RetryRate,
    mark_seen,
    read_alerts,
)
from tests.conformance.helpers import make_dead
from tests.observability.alerts_support import Recorder, evaluator, only

Action = Callable[[], Awaitable[object]]
REPEAT = 300.0


async def fire_repeat_resolve(
    ev: AlertEvaluator,
    rec: Recorder,
    clock: FakeClock,
    rule: str,
    *,
    activate: Action,
    deactivate: Action,
) -> list[Any]:
    """Drive one alert through its whole life; return its notifications."""
    first = await ev.step()
    assert first.leader and not first.checks[rule].active
    assert rec.statuses(rule) == []
    await activate()
    await ev.step()
    assert rec.statuses(rule) == ["firing"]
    await ev.step()  # still active, not yet time to repeat: nothing new
    clock.advance(REPEAT - 1)
    await ev.step()
    assert rec.statuses(rule) == ["firing"]
    clock.advance(1)
    await ev.step()
    assert rec.statuses(rule) == ["firing", "repeat"]
    await deactivate()
    report = await ev.step()
    assert not report.checks[rule].active
    assert rec.statuses(rule) == ["firing", "repeat", "resolved"]
    await ev.step()  # resolved stays resolved
    assert rec.statuses(rule) == ["firing", "repeat", "resolved"]
    state = await read_alerts(ev.app.backend)
    assert rule not in state.active and state.history[0].rule == rule
    sent = [n for n in rec.sent if n.fields.get("rule") == rule]
    assert len({n.id for n in sent}) == 3
    return sent


async def test_dlq_size(app: App, clock: FakeClock) -> None:
    ev, rec = evaluator(app, only(DlqSize(threshold=5, repeat_every=REPEAT)))
    await make_dead(app, 5)  # at the threshold is not above it

    sent = await fire_repeat_resolve(
        ev,
        rec,
        clock,
        "dlq_size",
        activate=lambda: make_dead(app, 1),
        deactivate=app.dlq.purge,
    )

    firing, repeat, resolved = sent
    assert firing.title == "DLQ size above 5: 6"
    assert firing.severity.value == "warning"
    assert firing.fields["value"] == 6 and firing.fields["threshold"] == 5
    assert firing.command == "genqueue dlq stats"
    assert repeat.title == "Still firing: DLQ size above 5: 6" and repeat.fields["repeats"] == 1
    assert resolved.title == "Resolved: DLQ size above 5 (now 0)"
    assert resolved.severity.value == "warning"  # reaches the targets the firing reached


def _ended(app: App, count: int, retried: int) -> None:
    """Report ``count`` jobs ended, the first ``retried`` of them after a retry."""
    for i in range(count):
        again = 1 if i < retried else 0
        if again:
            app.events.emit(EventName.QUEUE_RETRY, task="gen", retry_count=1)
        app.events.emit(EventName.JOB_COMPLETED, task="gen", retry_count=again)


async def test_retry_rate_with_a_minimum_sample(app: App, clock: FakeClock) -> None:
    rule = RetryRate(threshold=0.5, window=900, min_sample=4, repeat_every=REPEAT)
    ev, rec = evaluator(app, only(rule))
    _ended(app, 3, 3)  # 100 % retried, but only 3 jobs: no verdict
    report = await ev.step()
    assert report.checks["retry_rate"].value == 1.0
    assert not report.checks["retry_rate"].active and rec.sent == []

    async def one_more() -> None:
        _ended(app, 1, 1)

    async def healthy_traffic() -> None:
        _ended(app, 10, 0)  # 4 of 14 retried: 29 %

    sent = await fire_repeat_resolve(
        ev, rec, clock, "retry_rate", activate=one_more, deactivate=healthy_traffic
    )
    assert sent[0].title == "Retry rate above 50 % over 15m: 100 %"
    assert sent[0].fields["ended"] == 4 and sent[0].fields["retried"] == 4
    assert sent[0].command == "genqueue stats --window 15m"
    assert sent[2].title == "Resolved: Retry rate above 50 % over 15m (now 29 %)"


async def test_dlq_write_failure_is_critical(app: App, clock: FakeClock) -> None:
    ev, rec = evaluator(app, only(DlqWriteFailure(window=900, repeat_every=REPEAT)))

    async def failed_write() -> None:
        app.events.emit(
            EventName.DLQ_WRITE_FAILED, job_id="j1", task="gen", queue="q", error="OSError"
        )

    async def window_passes() -> None:
        clock.advance(900 + 60)

    sent = await fire_repeat_resolve(
        ev, rec, clock, "dlq_write_failure", activate=failed_write, deactivate=window_passes
    )
    assert sent[0].severity.value == "critical"
    assert sent[0].fields["failures"] == 1
    assert "dlq_write_failed" in sent[0].summary


async def test_dlq_growth(app: App, clock: FakeClock) -> None:
    rule = DlqGrowth(threshold=3, window=600, repeat_every=REPEAT)
    ev, rec = evaluator(app, only(rule))

    async def window_passes() -> None:
        clock.advance(600)

    sent = await fire_repeat_resolve(
        ev,
        rec,
        clock,
        "dlq_growth",
        activate=lambda: make_dead(app, 4),
        deactivate=window_passes,
    )
    assert sent[0].title == "More than 3 new dead letters in 10m: 4"
    assert sent[0].command == "genqueue dlq stats --since 10m"
    # The entries are still there: growth resolved, the size did not change.
    assert await app.dlq.count() == 4


async def test_breaker_open(app: App, clock: FakeClock) -> None:
    breakers: list[dict[str, Any]] = [{"account": "acct1", "state": "closed"}]

    async def source(_: App) -> list[dict[str, Any]]:
        return breakers

    ev, rec = evaluator(app, only(BreakerOpen(repeat_every=REPEAT)), breakers=source)

    async def opens() -> None:
        breakers[0] = {"account": "acct1", "state": "open", "reason": "5 server errors in a row"}

    async def closes() -> None:
        breakers[0] = {"account": "acct1", "state": "closed"}

    sent = await fire_repeat_resolve(
        ev, rec, clock, "breaker_open", activate=opens, deactivate=closes
    )
    assert sent[0].severity.value == "critical"
    assert sent[0].fields["accounts"] == "acct1 open (5 server errors in a row)"
    assert sent[0].command == "genqueue breaker list"


async def test_breaker_rule_without_a_source_is_not_evaluated(app: App) -> None:
    ev, _ = evaluator(app, only(BreakerOpen()))
    report = await ev.step()
    assert report.leader and report.checks == {} and report.errors == {}


async def test_oldest_queued(app: App, clock: FakeClock) -> None:
    app.task("t.slow", queue="slowq")(_noop)
    ev, rec = evaluator(app, only(OldestQueued(threshold=60, repeat_every=REPEAT)))

    async def waits() -> None:
        await app.enqueue("t.slow", {})
        clock.advance(61)

    async def picked_up() -> None:
        assert len(await app.backend.fetch(["slowq"], "w", 10, 3600)) == 1

    sent = await fire_repeat_resolve(
        ev, rec, clock, "oldest_queued", activate=waits, deactivate=picked_up
    )
    assert sent[0].title == "Oldest queued job waiting longer than 1m: 1m1s"
    assert sent[0].fields["queue"] == "slowq"
    assert sent[0].command == "genqueue jobs list --state queued --queue slowq"
    assert sent[1].fields["value"] == 361  # it waited on while the alert repeated


async def test_retention_unseen(app: App, clock: FakeClock) -> None:
    ev, rec = evaluator(app, only(RetentionUnseen(horizon=86400, repeat_every=REPEAT)))
    ids = await make_dead(app, 2)
    entries = [await app.dlq.get(i) for i in ids]
    retention = app.retention.dead_letters

    async def nears_deletion() -> None:
        clock.advance(retention - 86400 + 120)  # both expire within the next 24 h

    async def opened() -> None:
        await mark_seen(app, entries[:1])
        report = await ev.step()
        assert report.checks["retention_unseen"].value == 1  # one left nobody opened
        await mark_seen(app, entries[1:])

    sent = await fire_repeat_resolve(
        ev, rec, clock, "retention_unseen", activate=nears_deletion, deactivate=opened
    )
    assert sent[0].fields["value"] == 2 and sent[0].fields["expiring"] == 2
    assert sent[0].command is not None and sent[0].command.startswith("genqueue dlq list --until ")


async def test_a_mark_names_one_failure_of_the_job(app: App, clock: FakeClock) -> None:
    """A job redriven and dead again is a new entry (new failed_at): unseen again."""
    ev, _ = evaluator(app, only(RetentionUnseen(horizon=86400)))
    [job_id] = await make_dead(app, 1)
    entry = await app.dlq.get(job_id)
    await mark_seen(app, [dataclasses.replace(entry, failed_at=entry.failed_at - 100)])
    clock.advance(app.retention.dead_letters - 3600)
    assert (await ev.step()).checks["retention_unseen"].value == 1
    await mark_seen(app, [entry])
    assert (await ev.step()).checks["retention_unseen"].value == 0


async def _noop(ctx: Any) -> None:
    return None
