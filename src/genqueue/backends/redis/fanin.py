"""Which of a worker's queues to fetch from, without asking every queue on every fetch.

Teams run a queue per tenant or per model: a worker may listen on hundreds of queues, and
a fetch must not cost a read per queue. ``DueBoard`` keeps, per queue, the earliest time
work is known to be due there, from three sources:

- a fetch script's reply: when the queue's next job is due after what it claimed
  (``fetch.lua``), exact for the moment the script ran;
- a wake-up message: scripts publish the earliest due time of the ready or delayed jobs
  they add (``lib/prelude.lua``, ``wake.py``); jobs this process enqueues or moves back
  to a queue count at once (their messages arrive later);
- a sweep: one pipeline reading the ready and delayed heads of every queue (``sweep``).

A fetch runs the script only on queues whose time has come, and sends the scripts of
several queues in one pipeline, each asking for about as many jobs as its queue was last
seen to hold (``plan``; the limits add up to the fetch's, so nothing is claimed beyond it).
Sweeps make up for messages
this process did not get: while the wake-up subscription is not live (each fetch then
sweeps, at most every ``SWEEP_UNSUBSCRIBED`` seconds, as polling did), right after it is
confirmed (messages sent before were missed), and every ``SWEEP_EVERY`` seconds anyway
(while the subscription is up Redis loses no message; if it drops one, e.g. a subscriber
over its output buffer limit, it closes the connection, and we subscribe and sweep again).
So a lost message costs latency, never a job: the job is in Redis and the next sweep
finds it. The board is kept per process, not in Redis: on a Cluster every queue's keys
live in their own slot, so no script could keep a shared index, and none is needed.

Order: oldest due first, except that a queue which has had work due for ``FAIR_WAIT``
seconds without being fetched from goes first (longest waiting first), so a busy queue's
backlog cannot keep a quiet queue's jobs waiting beyond that bound.

Observations race with messages (a message may be handled before or after the reply of a
script that already saw its job): each message gets a tick, and an observation only drops
the messages it is sure to include, those heard before it was sent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema, QueueKeys

T = TypeVar("T")
log = logging.getLogger("genqueue.redis")

#: Sweep this often while the wake-up subscription is live (seconds).
SWEEP_EVERY = 5.0
#: ... and at most this often while it is not.
SWEEP_UNSUBSCRIBED = 0.1
#: A queue with work due that was not fetched from for this long goes first (seconds).
FAIR_WAIT = 0.5

INF = math.inf


class DueBoard:
    def __init__(self) -> None:
        self._known: dict[str, float] = {}  # queue -> due time, as last observed
        self._left: dict[str, int] = {}  # queue -> ready jobs, as last observed (at least)
        self._heard: dict[str, tuple[float, int]] = {}  # queue -> (earliest due, tick)
        self._tick = 0
        self._waiting: dict[str, float] = {}  # queue -> since when it has work due
        self._sweeps: dict[tuple[str, ...], tuple[float, int]] = {}  # (monotonic, generation)
        self._failing: set[str] = set()  # queues whose last fetch failed

    @property
    def tick(self) -> int:
        """Take before reading Redis; pass to ``observe`` with what was read."""
        return self._tick

    def heard(self, queue: str, due: float) -> None:
        """Work is due in ``queue`` at ``due`` (a message, or an enqueue of this process)."""
        self._tick += 1
        self._left[queue] = self._left.get(queue, 0) + 1  # a message: one job at least
        earlier = self._heard.get(queue)
        self._heard[queue] = (due if earlier is None else min(due, earlier[0]), self._tick)

    def observe(self, queue: str, due: float, tick: int, left: int) -> None:
        """Redis said the queue's next job is due at ``due`` (INF: none) and ``left`` jobs
        are ready, as of a read sent when the board's tick was ``tick``."""
        self._known[queue] = due
        self._left[queue] = left
        earlier = self._heard.get(queue)
        if earlier is not None and earlier[1] <= tick:
            del self._heard[queue]

    def due(self, queue: str) -> float:
        """When work is due in the queue as far as we know (-INF: never observed)."""
        known = self._known.get(queue, -INF)
        heard = self._heard.get(queue)
        return known if heard is None else min(known, heard[0])

    def next_due(self, queues: Sequence[str]) -> float:
        return min((self.due(q) for q in queues), default=INF)

    def order(self, queues: Sequence[str], now: float) -> list[str]:
        """The queues with work due by ``now``, in the order to fetch from them."""
        clock = time.monotonic()
        ranked = []
        for index, queue in enumerate(queues):
            due = self.due(queue)
            if due > now:
                self._waiting.pop(queue, None)
                continue
            since = self._waiting.setdefault(queue, clock)
            if clock - since >= FAIR_WAIT:
                ranked.append((0, since, index, queue))  # waited too long: first
            else:
                ranked.append((1, due, index, queue))
        ranked.sort()
        return [item[3] for item in ranked]

    def plan(self, order: Sequence[str], limit: int) -> list[tuple[str, int]]:
        """How many jobs to ask of each queue, in order: what it holds, or the rest of the
        limit when that is not known; never more than ``limit`` in all."""
        out = []
        for queue in order:
            if limit <= 0:
                break
            take = min(limit, max(self._left.get(queue, limit), 1))
            out.append((queue, take))
            limit -= take
        return out

    def served(self, queue: str) -> None:
        self._waiting.pop(queue, None)
        self._failing.discard(queue)

    def failed(self, queue: str) -> bool:
        """A fetch from the queue failed; whether it had not failed since it last answered."""
        if queue in self._failing:
            return False
        self._failing.add(queue)
        return True

    def needs_sweep(self, queues: Sequence[str], live: bool, generation: int) -> bool:
        last = self._sweeps.get(tuple(queues))
        if last is None:
            return True
        age = time.monotonic() - last[0]
        if not live:
            return age >= SWEEP_UNSUBSCRIBED
        return last[1] != generation or age >= SWEEP_EVERY

    def swept(self, queues: Sequence[str], generation: int, at: float) -> None:
        self._sweeps[tuple(queues)] = (at, generation)


async def sweep(
    conn: Connection, keys: KeySchema, board: DueBoard, queues: Sequence[str], generation: int
) -> None:
    """Read the ready and delayed heads of every queue (one pipeline; one key per
    command, so it runs on a Cluster too) into the board."""
    tick, at = board.tick, time.monotonic()

    async def heads() -> list[Any]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue in queues:
            queue_keys = keys.queue(queue)
            pipe.zrange(queue_keys["ready"], 0, 0, withscores=True)
            pipe.zrange(queue_keys["delayed"], 0, 0, withscores=True)
            pipe.zcard(queue_keys["ready"])
        return list(await pipe.execute())

    found = await conn.call("ZRANGE", heads)
    for index, queue in enumerate(queues):
        ready, delayed, left = found[3 * index : 3 * index + 3]
        scores = [s for _, s in ready] + [s for _, s in delayed]
        board.observe(queue, min(scores, default=INF), tick, int(left))
    board.swept(queues, generation, at)


class _Clock(Protocol):
    async def time(self) -> float: ...


async def delayed_due(
    conn: Connection, keys: KeySchema, queues: Sequence[str], clock: _Clock
) -> list[str]:
    """The queues whose oldest delayed job is due (one pipeline of ZRANGE, instead of a
    promote script on every queue)."""

    async def heads() -> list[list[tuple[bytes, float]]]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(keys.queue(queue)["delayed"], 0, 0, withscores=True)
        return list(await pipe.execute())

    found = await conn.call("ZRANGE", heads)
    now = await clock.time()
    return [q for q, head in zip(queues, found, strict=True) if head and head[0][1] <= now]


async def fetch_many(
    conn: Connection,
    keys: KeySchema,
    board: DueBoard,
    order: Sequence[str],
    limit: int,
    *,
    call: Callable[[QueueKeys, int], scripts.Call],
) -> list[tuple[str, scripts.FetchReply]]:
    """Run the fetch script on the queues of ``order`` (``call`` makes a queue's call
    for a limit) until ``limit`` jobs are claimed or every queue was asked; each round
    is one pipeline (``plan``).

    Every claim received is returned: a queue whose call failed (its slot moving, its
    node failing over) is left for the next fetch, and a round that fails after others
    claimed jobs ends the fetch with those jobs; only a fetch that claimed nothing raises.
    Claims dropped here would wait for their leases to expire and count as attempts."""
    out: list[tuple[str, scripts.FetchReply]] = []
    order = list(order)
    while order and limit > 0:
        plan = board.plan(order, limit)
        del order[: len(plan)]
        tick = board.tick
        try:
            replies = await conn.evaluate_many(
                [call(keys.queue(q), n) for q, n in plan], partial=True
            )
        except Exception as exc:
            if not out:
                raise
            log.warning("fetch stopped after %d queues (%s); jobs claimed are kept", len(out), exc)
            return out
        more = []
        for (queue, asked), raw in zip(plan, replies, strict=True):
            if isinstance(raw, Exception):
                if board.failed(queue):  # once until it answers again
                    log.warning(
                        "fetch from queue %r failed (%s); asking again next time", queue, raw
                    )
                continue
            reply = scripts.fetch_reply(raw)
            board.observe(queue, _or(reply.next_due, INF), tick, _or(reply.left, 0))
            board.served(queue)
            limit -= len(reply.claimed)
            out.append((queue, reply))
            if len(reply.claimed) == asked:
                more.append(queue)  # it may hold more due jobs (promoted ones, say)
        order = more + order
    return out


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
