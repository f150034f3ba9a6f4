"""A dead letter queue of 100,000 entries: every operation is indexed and chunked.

No script may run 500 ms or more (checked with Redis SLOWLOG), listing and filters are
served by the lex indexes, and bulk delete/expire go in bounded chunks. An unchunked
delete or a scan of 100,000 entries takes seconds, so the bound catches those; the scripts
take a few ms each when the machine is idle, and the margin is for a loaded CI machine.
Speed itself is measured in bench/, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import redis
from genqueue import App, ClassifiedError, DLQFilter, ErrorKind, FakeClock, JobRequest, JobState
from genqueue.backends.base import Move
from genqueue.backends.redis.scripts import SCRIPTS
from genqueue.entry import DeadLetter
from genqueue.job import Attempt, AttemptOutcome
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
N = 100_000
BATCH = 1000
SLOW_US = 500_000
DAY = 24 * 3600.0


async def fill(app: App, clock: FakeClock) -> float:
    """N dead jobs, made through the backend primitives; returns the first failed_at."""
    backend = app.backend
    t0 = clock.now()
    for start in range(0, N, BATCH):
        requests = [
            JobRequest("t", {"i": start + i}, user_id=f"u{(start + i) % 10}", queue="dlq")
            for i in range(BATCH)
        ]
        await app.queue.enqueue_many(requests)
        claimed = await backend.fetch(["dlq"], "w", BATCH, 30)
        moves = [dead_move(app, job, t0 + (start + i) * 0.001) for i, job in enumerate(claimed)]
        assert all(await backend.move(moves))
    return t0


def dead_move(app: App, job: Any, failed_at: float) -> Move:
    i = job.data["i"]
    kind = ErrorKind.AUTH if i % 2 else ErrorKind.SERVER
    error = ClassifiedError(kind, False, ("quota", "crash", "boom")[i % 3], "RuntimeError")
    attempt = Attempt(1, failed_at, failed_at, "w", AttemptOutcome.DEAD, error=error)
    dead = replace(
        job,
        state=JobState.DEAD,
        history=[attempt],
        last_error=error,
        finished_at=failed_at,
        lease_owner=None,
        lease_expires_at=None,
        cost={"usd": 0.01},
    )
    entry = DeadLetter(dead, "r", kind, failed_at, error.fingerprint, failed_at + 7 * DAY)
    return Move(dead, JobState.ACTIVE, job.attempts, entry)


@pytest.mark.slow
async def test_hundred_thousand_entries(make_server: Callable[..., RedisServer]) -> None:
    server = make_server(extra=["--slowlog-log-slower-than", str(SLOW_US)])
    client = redis.Redis(port=server.port)
    clock = FakeClock()
    app = App(server.url("big"), clock=clock)
    app.task("t", queue="dlq")(_never)
    async with app:
        t0 = await fill(app, clock)
        client.slowlog_reset()
        dlq = app.dlq
        assert await dlq.count() == N
        assert await dlq.count(DLQFilter(user_id="u3")) == N // 10
        assert await dlq.count(DLQFilter(user_id="u3", error_kind=ErrorKind.AUTH)) == N // 10
        assert await dlq.count(DLQFilter(since=t0 + 10, until=t0 + 20)) == 10_000
        page = await dlq.list(DLQFilter(user_id="u4"), limit=100)
        assert len(page.items) == 100 and all(e.user_id == "u4" for e in page.items)
        deeper = await dlq.list(DLQFilter(user_id="u4"), cursor=page.next_cursor, limit=100)
        assert deeper.items[0].failed_at < page.items[-1].failed_at
        fp = page.items[0].fingerprint
        assert await dlq.count(DLQFilter(fingerprint=fp)) in range(N // 3, N // 3 + 2)
        assert (await dlq.get(page.items[0].job_id)).job_id == page.items[0].job_id
        everything = await dlq.stats()  # from the indexes, not a scan
        assert everything.total == N and everything.by_user["u7"] == N // 10
        assert everything.cost_lost == {"usd": 1000.0} and sum(everything.by_day.values()) == N
        assert [g.count for g in everything.top_fingerprints] == [33334, 33333, 33333]
        stats = await dlq.stats(DLQFilter(user_id="u2", since=t0 + 50))
        assert stats.total == 5000 and stats.cost_lost == {"usd": 50.0}
        assert await dlq.purge(DLQFilter(user_id="u1")) == N // 10
        clock.advance(7 * DAY + 200)  # past the newest entry (failed at t0 + 100 s)
        assert await dlq.expire() == N - N // 10
        assert await dlq.count() == 0
        assert await app.backend.counts() == {}
        slow = client.slowlog_get(100)
    client.close()
    names = {script.sha: name for name, script in SCRIPTS.items()}
    over = [(e["duration"] // 1000, names.get(e["command"].split()[1].decode())) for e in slow]
    assert over == [], f"commands over {SLOW_US / 1000:.0f} ms: (ms, script) {over}"


async def _never(ctx: Any) -> None:
    raise AssertionError("never runs")
