"""A worker on many queues fetches only from those with work (fanin.DueBoard)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from genqueue import App
from genqueue.backends.redis import fanin, scripts
from genqueue.backends.redis.fanin import DueBoard
from genqueue.clock import FakeClock
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


async def _noop(ctx: Any) -> None:
    return None


def _app(**options: Any) -> App:
    """An app on a private Redis prefix whose task ``t`` does nothing."""
    app = App(redis_url_for_test(), **options)
    app.task("t")(_noop)
    return app


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
    app = _app(clock=clock)

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
    app = _app(clock=clock)

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


def _answer_tryagain_once(conn: Any, queue_tag: str) -> list[int]:
    """Make the first pipeline of scripts that runs one of ``queue_tag``'s queue answer
    that call TRYAGAIN without running it (as Redis does while the queue's slot moves);
    the other calls run. Returns the number of scripts each pipeline of scripts sent."""
    real = conn.redis.pipeline
    sizes: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        calls = 0
        send, execute = pipe.execute_command, pipe.execute

        def execute_command(*command: Any, **options: Any) -> Any:
            nonlocal calls
            if command[0] != "EVALSHA":
                return send(*command, **options)
            calls += 1
            if not sizes and str(command[3]).startswith(queue_tag):
                return send("EVAL", "return redis.error_reply('TRYAGAIN slot moving')", 0)
            return send(*command, **options)

        async def run(**options: Any) -> Any:
            if calls:
                sizes.append(calls)
            return await execute(**options)

        pipe.execute_command, pipe.execute = execute_command, run
        return pipe

    conn.redis.pipeline = pipeline
    return sizes


async def test_a_fetch_keeps_the_jobs_it_claimed_when_another_queue_fails() -> None:
    """One queue's fetch fails (its slot moving): the jobs claimed from the other queues in
    the same pipeline are handed out, not left active until their leases expire."""
    app = _app()

    async with app:
        backend: Any = app.backend
        ids = {(await app.enqueue("t", {}, queue=q)).id for q in ("a", "a", "b")}
        moving = await app.enqueue("t", {}, queue="c")
        _answer_tryagain_once(backend.conn, backend.keys.queue("c").tag)
        claimed = await backend.fetch(["a", "b", "c"], "w", 10, 30)
        assert {j.id for j in claimed} == ids
        counts = await backend.counts()
        assert counts["a"] == {"active": 2} and counts["b"] == {"active": 1}
        assert counts["c"] == {"queued": 1}  # asked again on the next fetch
        assert [j.id for j in await backend.fetch(["a", "b", "c"], "w", 10, 30)] == [moving.id]


async def test_calls_that_succeeded_are_not_sent_again() -> None:
    """When some calls of a pipeline fail transiently, only those are retried."""
    app = _app()

    async with app:
        backend: Any = app.backend
        for q in ("a", "b", "c"):
            await app.enqueue("t", {}, queue=q)
        sizes = _answer_tryagain_once(backend.conn, backend.keys.queue("b").tag)
        calls = [
            scripts.fetch_call(
                backend.keys.queue(q),
                backend._clock(),
                worker_id="w",
                limit=1,
                lease_seconds=30,
                promote_limit=10,
                want_next=True,
            )
            for q in ("a", "b", "c")
        ]
        replies = await backend.conn.evaluate_many(calls)
        assert sizes == [3, 1]  # the retry sent b's call alone
        assert [len(scripts.fetch_reply(r).claimed) for r in replies] == [1, 1, 1]
