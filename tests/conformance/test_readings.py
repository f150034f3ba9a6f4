"""What the metrics gauges read: the oldest due job per queue, and live workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from genqueue import App, FakeClock, presence
from genqueue.worker import Worker
from tests.conftest import FAST, drain


async def test_oldest_ready_is_the_earliest_due_queued_job(app: App, clock: FakeClock) -> None:
    app.task("a", queue="qa")(_noop)
    app.task("b", queue="qb")(_noop)
    assert await app.backend.oldest_ready() == {}
    first = clock.now()
    await app.enqueue("a", {})
    clock.advance(10)
    await app.enqueue("a", {})
    await app.enqueue("b", {})
    await app.enqueue("b", {}, delay=60)  # scheduled, not waiting yet
    assert await app.backend.oldest_ready() == {"qa": first, "qb": first + 10}
    await Worker(app, queues=["qa"], burst=True, settings=FAST).run()
    assert await app.backend.oldest_ready() == {"qb": first + 10}


async def test_workers_beat_leave_and_go_stale(app: App, clock: FakeClock) -> None:
    now = clock.now()
    one = presence.WorkerInfo("w1", ("q",), 10, 2, now, now)
    two = presence.WorkerInfo("w2", ("q", "r"), 4, 0, now, now)
    assert await presence.beat(app, one, stale_after=30)
    assert await presence.beat(app, two, stale_after=30)
    assert [w.id for w in await presence.live_workers(app, 30)] == ["w1", "w2"]
    clock.advance(20)
    later = clock.now()
    beat = presence.WorkerInfo("w2", ("q", "r"), 4, 3, now, later)
    assert await presence.beat(app, beat, stale_after=30)
    clock.advance(15)  # w1 is silent for 35 s: gone; w2 beat 15 s ago
    live = await presence.live_workers(app, 30)
    assert [(w.id, w.busy) for w in live] == [("w2", 3)]
    assert await presence.leave(app, "w2")
    assert await presence.live_workers(app, 30) == []


async def test_a_running_worker_is_present_until_it_stops(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Present before it runs any job, even when writing its presence is slow."""
    beat = presence.beat

    async def slow_beat(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.2)
        return await beat(*args, **kwargs)

    monkeypatch.setattr(presence, "beat", slow_beat)
    seen: list[list[str]] = []

    @app.task("look", queue="q")
    async def look(ctx: object) -> None:
        seen.append([w.id for w in await presence.live_workers(app, 30)])

    await app.enqueue("look", {})
    worker = await drain(app)
    assert seen == [[worker.id]]
    assert await presence.live_workers(app, 30) == []


async def _noop(ctx: object) -> None:
    return None
