"""Three workers, one backend: one evaluator at a time, one notification per alert.

Each "worker" is its own ``App`` with its own backend connection to one SQLite file or
one Redis, as separate processes would have; they share a fake clock, and each round
steps all three evaluators concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, FakeClock, Worker, WorkerSettings
from genqueue.backends.base import Move
from genqueue.job import JobState
from genqueue.observability.alerts import (
    AlertEvaluator,
    DigestSettings,
    DlqGrowth,
    DlqSize,
    DlqWriteFailure,
    OldestQueued,
    read_alerts,
)
from genqueue.observability.notify import Notifications, NotifySettings, NotifyTarget
from tests.conformance.helpers import make_dead
from tests.conftest import BACKENDS, backend_url
from tests.observability.alerts_support import evaluator, only
from tests.observability.receiver import ScriptedReceiver

SHARED = [kind for kind in BACKENDS if kind != "memory"]  # memory is per process


@pytest.fixture(params=SHARED)
async def apps(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[list[App]]:
    url = backend_url(request.param, tmp_path)
    found = [App(url, clock=clock) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for app in found:
            await stack.enter_async_context(app)
        yield found


async def step_all(evaluators: Sequence[AlertEvaluator]) -> list[bool]:
    """One round on every worker at once; who led it."""
    reports = await asyncio.gather(*(ev.step() for ev in evaluators))
    return [r.leader for r in reports]


@pytest.mark.parametrize("lease", [60.0, 6 * 3600.0], ids=["leader-changes", "one-leader"])
async def test_exactly_one_notification_per_alert_across_three_workers(
    apps: list[App], clock: FakeClock, lease: float
) -> None:
    # With a 60 s lease the clock's jumps outlast it and whoever steps first leads next.
    settings = only(DlqSize(threshold=2), DlqGrowth(threshold=2, window=600), lease=lease)
    pairs = [evaluator(app, settings, f"w{i}") for i, app in enumerate(apps)]
    evaluators = [ev for ev, _ in pairs]
    leaders = await step_all(evaluators)
    assert leaders.count(True) == 1

    await make_dead(apps[1], 3)
    for _ in range(5):  # many rounds while firing: still one notification each
        assert (await step_all(evaluators)).count(True) == 1
        clock.advance(30)
    clock.advance(600)  # growth's window passes: it resolves; the size stays
    await step_all(evaluators)
    clock.advance(4 * 3600)  # the size alert repeats once
    await step_all(evaluators)
    await step_all(evaluators)
    await apps[2].dlq.purge()
    await step_all(evaluators)
    await step_all(evaluators)

    total: Counter[Any] = Counter()
    for _, rec in pairs:
        total.update(rec.by_transition())
    assert total == {
        ("dlq_size", "firing", 0): 1,
        ("dlq_size", "repeat", 1): 1,
        ("dlq_size", "resolved", 1): 1,
        ("dlq_growth", "firing", 0): 1,
        ("dlq_growth", "resolved", 0): 1,
    }
    if lease > 4 * 3600:  # the lease outlasted every jump: one worker sent everything
        assert sorted(len(rec.sent) for _, rec in pairs) == [0, 0, 5]


async def test_leader_failover_delivers_what_the_dead_leader_stored(
    apps: list[App], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = only(DlqSize(threshold=0), lease=60)
    (w0, rec0), (w1, rec1), (w2, rec2) = (
        evaluator(app, settings, f"w{i}") for i, app in enumerate(apps)
    )
    assert await step_all([w0]) == [True]
    assert await step_all([w1, w2]) == [False, False]

    # The leader stores the firing alert, then dies before delivering it.
    async def dies() -> list[Any]:
        return []

    monkeypatch.setattr(w0, "deliver", dies)
    await make_dead(apps[0], 1)
    await w0.step()
    assert rec0.sent == [] and len((await read_alerts(apps[0].backend)).outbox) == 1

    clock.advance(59)  # its lease still holds: nobody takes over, nobody sends
    assert await step_all([w1, w2]) == [False, False]
    clock.advance(2)
    assert (await step_all([w1, w2])).count(True) == 1
    new_leader, rec = (w1, rec1) if w1.leader else (w2, rec2)
    assert rec.statuses() == ["firing"]  # from the outbox, under the id w0 gave it
    assert (await read_alerts(apps[0].backend)).outbox == []

    await apps[0].dlq.purge()
    await step_all([w1, w2])
    assert rec.statuses() == ["firing", "resolved"]
    assert len(rec0.sent) + len(rec1.sent) + len(rec2.sent) == 2

    # A leader that stops releases the lease: the next worker takes over at once.
    await new_leader.release()
    other = w2 if new_leader is w1 else w1
    assert (await other.step()).leader  # at once, without waiting for the lease to expire


async def test_a_dlq_write_failure_in_another_process_fires_on_the_leader(
    apps: list[App], clock: FakeClock
) -> None:
    leader_app, failing_app, _ = apps
    settings = only(DlqWriteFailure())
    leader, leader_rec = evaluator(leader_app, settings, "leader")
    follower, follower_rec = evaluator(failing_app, settings, "follower")
    assert (await leader.step()).leader  # first, so it leads
    assert await step_all([leader, follower]) == [True, False]

    @failing_app.task("gen.fails", queue="gen")
    async def fails(ctx: Any) -> None:
        raise RuntimeError("provider exploded")

    real_move = failing_app.backend.move

    async def move(moves: Sequence[Move]) -> list[bool]:
        if any(m.job.state is JobState.DEAD for m in moves):
            raise OSError("disk full")
        return await real_move(moves)

    failing_app.backend.move = move  # type: ignore[method-assign]
    job = await failing_app.enqueue("gen.fails", {}, max_retries=0)
    settings_ = WorkerSettings(concurrency=1, poll_interval=0.01, sweep_interval=3600)
    await Worker(failing_app, burst=True, settings=settings_).run()
    assert (await failing_app.get(job.id)).state is JobState.ACTIVE  # not dead: not stored
    await failing_app.tally.flush()  # what the worker's tally loop does every 5 s

    assert await step_all([leader, follower]) == [True, False]
    assert leader_rec.statuses() == ["firing"] and follower_rec.sent == []
    firing = leader_rec.sent[0]
    assert firing.severity.value == "critical" and firing.fields["failures"] == 1


async def test_dead_letter_digests_come_from_the_leader_only(
    apps: list[App], clock: FakeClock
) -> None:
    receivers = [ScriptedReceiver() for _ in apps]
    target = NotifyTarget("oncall", "slack", "https://hooks.slack.com/services/T/B/secret")  # type: ignore[arg-type]
    notifiers = [
        Notifications(
            NotifySettings((target,)), backend=app.backend, clock=clock, client=r.client()
        )
        for app, r in zip(apps, receivers, strict=True)
    ]
    # A lease longer than the clock's jumps: the same worker leads throughout.
    settings = only(digests=DigestSettings(window=300, grace=30), lease=3600)
    evaluators = [
        AlertEvaluator(app, settings, notifier=n, holder=f"w{i}")
        for i, (app, n) in enumerate(zip(apps, notifiers, strict=True))
    ]
    leaders = await step_all(evaluators)

    # 200 dead letters of 3 fingerprints, written by a worker that does not lead.
    writer = apps[leaders.index(False)]
    await make_dead(writer, 120, task="gen.image", message="provider answered 500")
    await make_dead(writer, 50, task="gen.image", message="rate limited", step=2)
    await make_dead(writer, 30, task="gen.sprite", message="prompt rejected", step=3)
    await step_all(evaluators)  # the window is still open: nothing yet
    assert sum(len(r.requests) for r in receivers) == 0

    clock.advance(330)
    await step_all(evaluators)
    await step_all(evaluators)
    clock.advance(300)  # the next window has no dead letters: no message
    await step_all(evaluators)

    assert [ev.leader for ev in evaluators] == leaders
    sent = [len(r.requests) for r in receivers]
    assert sent[leaders.index(True)] == 3 and sum(sent) == 3
    texts = sorted(r.json()["text"] for r in receivers[leaders.index(True)].requests)
    assert [t.split(":")[0] for t in texts] == [
        "[DEAD LETTERS] 120 dead letters",
        "[DEAD LETTERS] 30 dead letters",
        "[DEAD LETTERS] 50 dead letters",
    ]
    for notifier in notifiers:
        await notifier.aclose()


async def test_oldest_queued_across_workers_uses_the_shared_queue(
    apps: list[App], clock: FakeClock
) -> None:
    apps[2].task("t.wait", queue="waitq")(_noop)
    settings = only(OldestQueued(threshold=60))
    pairs = [evaluator(app, settings, f"w{i}") for i, app in enumerate(apps)]
    await apps[2].enqueue("t.wait", {})
    clock.advance(90)
    await step_all([ev for ev, _ in pairs])
    statuses = [rec.statuses() for _, rec in pairs]
    assert sorted(statuses) == [[], [], ["firing"]]


async def _noop(ctx: Any) -> None:
    return None
