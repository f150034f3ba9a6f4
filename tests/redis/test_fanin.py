"""A worker on many queues fetches only from those with work (fanin.DueBoard)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from genqueue import App
from genqueue.backends.redis import fanin
from genqueue.backends.redis.fanin import DueBoard
from genqueue.clock import FakeClock
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


def test_board_orders_oldest_due_first_and_skips_queues_not_due() -> None:
    board = DueBoard()
    tick = board.tick
    board.observe("a", 5.0, tick, 1)
    board.observe("b", 2.0, tick, 1)
    board.observe("c", math.inf, tick, 0)
    board.observe("d", 50.0, tick, 0)  # a delayed job, not due yet
    assert board.order(["a", "b", "c", "d"], now=10.0) == ["b", "a"]
    assert board.next_due(["c", "d"]) == 50.0
    assert board.order(["c", "d"], now=50.0) == ["d"]


def test_board_keeps_a_message_heard_while_a_read_was_under_way() -> None:
    board = DueBoard()
    tick = board.tick  # a fetch is sent
    board.heard("a", 3.0)  # a message arrives before its reply
    board.observe("a", math.inf, tick, 0)  # the reply may predate the job
    assert board.due("a") == 3.0
    board.observe("a", math.inf, board.tick, 0)  # a read sent after the message
    assert board.due("a") == math.inf


def test_board_puts_a_queue_kept_waiting_first(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(fanin.time, "monotonic", lambda: now[0])
    board = DueBoard()
    board.observe("busy", 1.0, board.tick, 1000)
    board.observe("quiet", 9.0, board.tick, 1)
    assert board.order(["busy", "quiet"], now=10.0) == ["busy", "quiet"]
    board.served("busy")
    now[0] += fanin.FAIR_WAIT
    # The busy queue's backlog is older, but the quiet queue has waited long enough.
    assert board.order(["busy", "quiet"], now=10.0) == ["quiet", "busy"]


def test_board_plans_no_more_than_the_limit() -> None:
    board = DueBoard()
    board.observe("a", 1.0, board.tick, 3)
    board.observe("b", 2.0, board.tick, 10)
    assert board.plan(["a", "b", "c"], 8) == [("a", 3), ("b", 5)]
    assert board.plan(["c", "a"], 8) == [("c", 8)]  # unknown: the rest of the limit
    assert board.plan(["a", "c"], 8) == [("a", 3), ("c", 5)]


async def test_a_lost_wake_up_costs_latency_not_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)

    @app.task("t")
    async def t(ctx: Any) -> None:
        return None

    queues = [f"q{i}" for i in range(20)]
    async with app:
        backend: Any = app.backend
        assert await backend.fetch(queues, "w", 10, 30) == []  # the first fetch sweeps
        await backend.wakeups.close()  # from here on, every message is lost...

        async def watch(queues: Any) -> None:
            return None

        monkeypatch.setattr(backend.wakeups, "watch", watch)
        backend.wakeups.live = True  # ... while the subscription looks live
        job = await app.enqueue("t", {}, queue="q7")
        backend.board.observe("q7", math.inf, backend.board.tick, 0)  # forget our enqueue
        backend.board.swept(queues, backend.wakeups.generation, fanin.time.monotonic())
        assert await backend.fetch(queues, "w", 10, 30) == []  # no read of q7
        monkeypatch.setattr(fanin, "SWEEP_EVERY", 0.0)  # the next periodic sweep
        assert [j.id for j in await backend.fetch(queues, "w", 10, 30)] == [job.id]


async def test_many_queues_fetch_claims_across_queues_up_to_the_limit() -> None:
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)

    @app.task("t")
    async def t(ctx: Any) -> None:
        return None

    queues = [f"q{i}" for i in range(30)]
    async with app:
        ids = set()
        for i in range(90):
            ids.add((await app.enqueue("t", {}, queue=queues[i % 30])).id)
            clock.advance(0.01)
        first = await app.backend.fetch(queues, "w", 50, 30)
        assert len(first) == 50 and {j.id for j in first} <= ids
        rest = await app.backend.fetch(queues, "w", 100, 30)
        assert {j.id for j in first + rest} == ids and len(rest) == 40
        assert await app.backend.fetch(queues, "w", 100, 30) == []
