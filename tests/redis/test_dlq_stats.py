"""DLQ statistics from the indexes equal those of a full scan of the entries."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from genqueue import App, ClassifiedError, DLQFilter, ErrorKind, FakeClock, JobRequest, JobState
from genqueue.backends.base import Backend, Move
from genqueue.backends.redis import RedisBackend
from genqueue.entry import DeadLetter
from tests.conformance.helpers import make_dead
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis
DAY = 24 * 3600.0


async def test_index_stats_match_a_scan() -> None:
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)
    async with app:
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        await make_dead(app, 5, user_id="ann", kind=ErrorKind.AUTH, task="a", message="bad key")
        await make_dead(app, 3, user_id=None, kind=ErrorKind.AUTH, task="b", message="bad key")
        await make_dead(app, 4, user_id="bob", task="b", message="HTTP 503", offset=2 * DAY)
        await make_dead(app, 2, user_id="bob", task="c", message="boom", step=DAY / 2)
        costly = await dead_with_cost(app, queue="images", cost={"usd": 0.25, "credits": 3})
        await dead_with_cost(app, queue="images", cost={"usd": 0.5})
        gone = await dead_with_cost(app, queue="images", cost={"usd": 1e-05, "credits": -2})
        deleted = await make_dead(app, 2, user_id="gone", message="deleted later")
        await app.dlq.delete_many([*deleted, gone])  # its cost is taken away again
        for query in (DLQFilter(), DLQFilter(queue="images"), DLQFilter(queue="dlqtest")):
            fast = await backend.dlq_stats(query, top=3)
            scanned = await Backend.dlq_stats(backend, query, top=3)
            assert fast == scanned, query
        stats = await backend.dlq_stats(DLQFilter())
        assert stats.total == 16 and stats.by_user["(none)"] == 5  # 3 + the 2 costly jobs
        assert stats.cost_lost == {"usd": 0.75, "credits": 3.0}
        assert len(stats.by_day) >= 2
        await app.dlq.delete(costly)
        assert (await backend.dlq_stats(DLQFilter())).cost_lost.get("usd") == 0.5


async def dead_with_cost(app: App, *, queue: str, cost: dict[str, float]) -> str:
    if "costly" not in app.tasks:
        app.task("costly", queue=queue)(_never)
    [job] = await app.queue.enqueue_many([JobRequest("costly", {}, queue=queue)])
    [claimed] = await app.backend.fetch([queue], "w", 1, 30)
    now = await app.backend.time()
    assert await app.backend.move([make_move(claimed, now, cost)]) == [True]
    assert job.id == claimed.id
    return job.id


def make_move(job: Any, now: float, cost: dict[str, float]) -> Move:
    error = ClassifiedError(ErrorKind.PAYMENT, False, "no credits left", "PaymentError")
    dead = replace(job, state=JobState.DEAD, last_error=error, finished_at=now, cost=cost)
    entry = DeadLetter(dead, "out of credits", error.kind, now, error.fingerprint, now + 7 * DAY)
    return Move(dead, JobState.ACTIVE, job.attempts, entry)


async def _never(ctx: Any) -> None:
    raise AssertionError("never runs")
