"""The Redis backend: every state change is one Lua script on one queue's keys.

Scripts (``lua/``) do the atomic work on one queue; this module groups calls by queue
and merges results, so nothing ever spans two Cluster slots. Due times, leases and
retention follow the Redis server's clock (``TIME`` inside the scripts); ``time()``
returns an estimate of it kept current by every script reply. A ``FakeClock`` given by
tests stands in for the server clock so they can move time; any other clock is ignored.

Calls that name only a job id find its queue through ``registry``. Synchronous producers'
enqueues are sent from their own thread (``enqueue_now``, see ``blocking``).

A worker on many queues fetches only from those with work due (``fanin.DueBoard``, fed by
the fetch replies, the wake-up messages and periodic sweeps), not from every queue.

The same code serves one server and Redis Cluster: ``Connection`` holds either client
(and on a cluster runs the scripts' SPUBLISH twins), and wake-ups are ``WakeUps`` or
``ShardedWakeUps`` (see ``cluster`` and ``wake``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import orjson

from genqueue.backends.base import Backend, Capabilities, JobQuery, Lease, Move, RunningUpdate
from genqueue.backends.redis import codec, fanin, listing, scripts, stats
from genqueue.backends.redis.blocking import BlockingEnqueue
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema, QueueKeys
from genqueue.backends.redis.layout import check_layout
from genqueue.backends.redis.options import RedisOptions, safe_url
from genqueue.backends.redis.reads import Reader
from genqueue.backends.redis.registry import QueueRegistry
from genqueue.backends.redis.shared import SharedStateMixin
from genqueue.backends.redis.wake import wake_ups
from genqueue.clock import Clock, FakeClock
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, Page
from genqueue.errors import BackendError, InvalidInput
from genqueue.job import Job, JobState

#: States in which a job waits in a queue's ready or delayed set.
PENDING = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING})

#: Most items one script call handles, so no script runs long on a big queue.
CHUNK = 500
#: Most jobs one deleting script removes (each takes every index entry with it): ~5 ms.
DELETE_CHUNK = 200
#: Most jobs one fetch script claims (~10 ms of Redis time); a worker asks again.
FETCH_MAX = 1000
#: Delayed jobs promoted by one fetch call.
PROMOTE_PER_FETCH = 200
#: Ask Redis for its time when no script reply has refreshed the estimate for this long.
CLOCK_MAX_AGE = 30.0
#: A wake-up message for work due this soon (seconds) wakes idle workers (more than the
#: error of two processes' estimates of the server clock; a spurious wake-up costs a fetch).
WAKE_AHEAD = 0.25
#: The shortest wait for the next delayed job.
MIN_WAIT = 0.01


class RedisBackend(SharedStateMixin, Backend):
    def __init__(
        self,
        options: RedisOptions | str,
        *,
        clock: Clock | None = None,
        allow_eviction: bool | None = None,
        url: str | None = None,
    ) -> None:
        if isinstance(options, str):
            url = url or options
            options = RedisOptions.from_url(options)
        if allow_eviction is not None:
            options = replace(options, allow_eviction=allow_eviction)
        self.options = options
        self.url = url or options.url
        self.keys = KeySchema(options.prefix)
        # Only a test clock replaces the server's: a skewed machine clock must not matter.
        self.test_clock = clock if isinstance(clock, FakeClock) else None
        self.capabilities = Capabilities(shared=True, server_time=self.test_clock is None)
        #: The Redis server's version, known after ``open()``.
        self.server_version: str | None = None
        self._conn: Connection | None = None
        self._blocking: BlockingEnqueue | None = None  # enqueue_now's client, once open
        self.registry = QueueRegistry(self.keys, lambda: self.conn)
        self.reader = Reader(lambda: self.conn, self.keys, self.registry, self._clock)
        self.board = fanin.DueBoard()
        self.wakeups = wake_ups(
            self.options, lambda: self.conn, lambda q: self.keys.queue(q)["ready"], self._heard
        )

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> RedisBackend:
        return cls(RedisOptions.from_url(url), clock=clock, url=url)

    def __repr__(self) -> str:
        return f"<RedisBackend {safe_url(self.url)} prefix={self.keys.prefix}>"

    # -- plumbing -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        conn = Connection(self.options)
        try:
            version = await conn.check()
            await conn.load_scripts()
            await check_layout(conn, self.keys, self._clock())
            await conn.server_time()
        except BaseException:
            await conn.close()
            raise
        self.server_version = version
        self._conn = conn
        if conn.topology is None and self.options.wait_replicas == 0:
            self._blocking = BlockingEnqueue(self.options, conn.clock)

    async def close(self) -> None:
        await self.wakeups.close()
        if self._blocking is not None:
            blocking, self._blocking = self._blocking, None
            blocking.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise BackendError(
                "the Redis backend is not open (use `async with app:` or app.open())"
            )
        return self._conn

    def _clock(self) -> str:
        return codec.num(self.test_clock.now()) if self.test_clock is not None else ""

    def clock_now(self) -> float | None:
        if self.test_clock is not None:
            return self.test_clock.now()
        conn = self._conn
        return None if conn is None or conn.clock.stale(CLOCK_MAX_AGE) else conn.clock.now()

    async def time(self) -> float:
        if self.test_clock is not None:
            return self.test_clock.now()
        conn = self.conn
        estimate = conn.clock.now()
        if estimate is None or conn.clock.stale(CLOCK_MAX_AGE):
            return await conn.server_time()
        return estimate

    async def queues(self) -> list[str]:
        """Every queue that has ever had a job (the registry)."""
        return await self.registry.queues()

    # -- producers ----------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        by_queue = _by_queue(jobs)
        encoded = [codec.enqueue_args(job) for job in jobs]  # all encode before any write
        await self.registry.register(list(by_queue))
        out: list[Job] = list(jobs)
        # Atomic per queue: a batch spanning queues is one script per queue.
        for queue, indexes in by_queue.items():
            keys = self.keys.queue(queue)
            reply = await scripts.enqueue(
                self.conn.evaluate, keys, self._clock(), [encoded[i] for i in indexes]
            )
            self._stored(queue, indexes, reply, out)
        return out

    def enqueue_now(self, jobs: Sequence[Job]) -> list[Job] | None:
        """From a synchronous caller's thread: one queue's jobs on one server, when its
        queue was registered lately (see ``blocking``)."""
        by_queue, blocking = _by_queue(jobs), self._blocking  # (closed meanwhile: kept)
        if blocking is None or len(by_queue) != 1:
            return None
        [(queue, indexes)] = by_queue.items()
        if not self.registry.registered_lately(queue):
            return None
        encoded = [codec.enqueue_args(job) for job in jobs]
        reply = blocking.send(self.keys.queue(queue), self._clock(), encoded)
        if reply is None:
            return None
        out = list(jobs)
        self._stored(queue, indexes, reply, out)
        return out

    def _stored(
        self, queue: str, indexes: list[int], reply: scripts.EnqueueReply, out: list[Job]
    ) -> None:
        """What an enqueue script stored: each job, or the holder of its idempotency key."""
        self.board.heard(queue, min(out[i].run_at for i in indexes))
        for index, holder in zip(indexes, reply.holders, strict=True):
            if holder is not None:
                holder_id = codec.parse_hot(holder.hot)[6][-32:]
                out[index] = codec.decode_job(holder_id, queue, holder)
            self.registry.remember(out[index].id, queue)

    async def get(self, job_id: str) -> Job | None:
        found = await self.reader.find(job_id)
        return found[0] if found is not None else None

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        queues = [query.queue] if query.queue is not None else await self.queues()
        return await listing.list_jobs(self.conn, self.keys, queues, query, self.reader.load)

    async def job_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        conn, found = self.conn, set()
        for queue in await self.queues():
            # A dead job kept whole has no hot record: its entry holds it.
            for key in (self.keys.queue(queue)["hot"], self.keys.queue(queue)["dlq"]):

                async def scan(key: str = key) -> set[str]:
                    ids = conn.redis.hscan_iter(key, match=f"{prefix}*", count=1000)
                    return {i.decode() if isinstance(i, bytes) else i async for i, _ in ids}

                found |= await conn.call("HSCAN", scan)
        return sorted(found)[:limit]

    async def counts(self) -> dict[str, dict[str, int]]:
        return await listing.counts(self.conn, self.keys, await self.queues())

    async def oldest_ready(self) -> dict[str, float]:
        return await listing.oldest_ready(self.conn, self.keys, await self.queues())

    # -- workers ------------------------------------------------------------------------

    def _heard(self, queue: str, due: float) -> bool:
        """A wake-up message: note it; wake idle workers if the work is due (about) now."""
        self.board.heard(queue, due)
        now = self.test_clock.now() if self.test_clock is not None else self.conn.clock.now()
        return now is None or due <= now + WAKE_AHEAD

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        if len(queues) > 1:
            # Wake when the next delayed job we know of is due, not a poll interval later.
            due_in = self.board.next_due(queues) - await self.time()
            timeout = max(min(timeout, due_in), MIN_WAIT)
        await self.wakeups.wait(queues, timeout)

    async def fetch(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_seconds: float
    ) -> list[Job]:
        if limit <= 0 or not queues:
            return []
        await self.registry.register(queues)
        clock, limit = self._clock(), min(limit, FETCH_MAX)

        def call(keys: QueueKeys, n: int) -> scripts.Call:
            return scripts.fetch_call(
                keys,
                clock,
                worker_id=worker_id,
                limit=n,
                lease_seconds=lease_seconds,
                promote_limit=PROMOTE_PER_FETCH,
                want_next=len(queues) > 1,  # only the board needs what is left
            )

        if len(queues) > 1:
            order = await self._fetch_order(queues)
            replies = await fanin.fetch_many(
                self.conn, self.keys, self.board, order, limit, call=call
            )
        else:
            raw = await self.conn.evaluate(*call(self.keys.queue(queues[0]), limit))
            replies = [(queues[0], scripts.fetch_reply(raw))]
        claimed: list[Job] = []
        for queue, reply in replies:
            for job_id, body, attempts in reply.claimed:
                job = codec.fetched_job(
                    job_id,
                    body,
                    attempts,
                    queue=queue,
                    owner=worker_id,
                    now=reply.now,
                    lease=lease_seconds,
                )
                claimed.append(job)
                self.registry.remember(job_id, queue)
        return claimed

    async def _fetch_order(self, queues: Sequence[str]) -> list[str]:
        """The queues with work due (as the board knows), in the order to fetch from."""
        wakeups = self.wakeups
        await wakeups.watch(queues)  # a busy worker never waits, but hears all the same
        if self.board.needs_sweep(queues, wakeups.live, wakeups.generation):
            await fanin.sweep(self.conn, self.keys, self.board, queues, wakeups.generation)
        return self.board.order(queues, await self.time())

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[str]:
        if not leases:
            return []
        where = await self.registry.locate([lease.job_id for lease in leases])
        lost = [lease.job_id for lease in leases if lease.job_id not in where]
        by_queue: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for lease in leases:
            if lease.job_id in where:
                by_queue[where[lease.job_id]].append((lease.job_id, lease.token))
        for queue, items in by_queue.items():
            for start in range(0, len(items), CHUNK):
                reply = await scripts.heartbeat(
                    self.conn.evaluate,
                    self.keys.queue(queue),
                    self._clock(),
                    lease_seconds,
                    items[start : start + CHUNK],
                )
                lost += reply.ids
        return lost

    async def update_running(self, lease: Lease, update: RunningUpdate) -> bool:
        where = await self.registry.locate([lease.job_id])
        if lease.job_id not in where:
            return False
        progress = orjson.dumps(update.progress.to_record()) if update.progress else b""
        reply = await scripts.update_running(
            self.conn.evaluate,
            self.keys.queue(where[lease.job_id]),
            self._clock(),
            job_id=lease.job_id,
            token=lease.token,
            progress=progress,
            patch=codec.running_patch(update),
        )
        return reply.flags[0]

    async def move(self, moves: Sequence[Move]) -> list[bool]:
        encoded = [codec.move_args(m) for m in moves]  # encode all before any write
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(moves):
            by_queue[item.job.queue].append(index)
        results = [False] * len(moves)
        chunks = [
            (queue, chunk)
            for queue, indexes in by_queue.items()
            for chunk in _distinct_chunks(indexes, [m.job.id for m in moves])
        ]
        # One pipeline for every queue's chunks (a batch of outcomes spans many queues);
        # chunks of one queue run in order, so a second move of a job sees the first.
        calls = [
            scripts.move_call(self.keys.queue(q), self._clock(), [encoded[i] for i in chunk])
            for q, chunk in chunks
        ]
        for (_, chunk), raw in zip(chunks, await self.conn.evaluate_many(calls), strict=True):
            for index, applied in zip(chunk, scripts.move_reply(raw).flags, strict=True):
                results[index] = applied
                job = moves[index].job
                if applied and job.state in PENDING:
                    self.board.heard(job.queue, job.run_at)
        return results

    async def expired(self, limit: int) -> list[Job]:
        now = await self.time()
        queues = await self.queues()

        async def read() -> list[list[tuple[bytes, float]]]:
            pipe = self.conn.redis.pipeline(transaction=False)
            for queue in queues:
                pipe.zrangebyscore(
                    self.keys.queue(queue)["leases"], "-inf", now, 0, limit, withscores=True
                )
            return list(await pipe.execute())

        found = await self.conn.call("ZRANGEBYSCORE", read)
        candidates = sorted(
            (score, queue, member.decode())
            for queue, items in zip(queues, found, strict=True)
            for member, score in items
        )[:limit]
        loaded = await self.reader.load([(queue, job_id) for _, queue, job_id in candidates])
        return [loaded[job_id][0] for _, _, job_id in candidates if job_id in loaded]

    async def promote(self, limit: int) -> int:
        moved = 0
        for queue in await fanin.delayed_due(self.conn, self.keys, await self.queues(), self):
            while moved < limit:
                size = min(CHUNK, limit - moved)
                reply = await scripts.promote(
                    self.conn.evaluate, self.keys.queue(queue), self._clock(), size
                )
                moved += reply.n
                if reply.n < size:
                    break
        return moved

    async def purge_finished(
        self, now: float, finished_before: float, limit: int, keep: int | None = None
    ) -> int:
        removed = 0
        for queue in await self.queues():
            while removed < limit:
                size = min(DELETE_CHUNK, limit - removed)
                reply = await scripts.purge_finished(
                    self.conn.evaluate,
                    self.keys.queue(queue),
                    self._clock(),
                    now,
                    finished_before=finished_before,
                    limit=size,
                    keep=keep,
                )
                removed += reply.n
                if reply.examined < size:
                    break
        return removed

    # -- dead letter queue ----------------------------------------------------------------

    async def dlq_get(self, job_id: str) -> DeadLetter | None:
        found = await self.reader.find(job_id)
        return found[1] if found is not None else None

    async def _dlq_queues(self, filter: DLQFilter) -> list[str]:
        return [filter.queue] if filter.queue is not None else await self.queues()

    async def dlq_list(self, filter: DLQFilter, cursor: str | None, limit: int) -> Page[DeadLetter]:
        queues = await self._dlq_queues(filter)
        load, clock = self.reader.load, self._clock()
        return await listing.dlq_list(
            self.conn, self.keys, queues, filter, cursor=cursor, limit=limit, load=load, clock=clock
        )

    async def dlq_count(self, filter: DLQFilter) -> int:
        queues = await self._dlq_queues(filter)
        return await listing.dlq_count(self.conn, self.keys, queues, filter, self._clock())

    async def dlq_stats(self, filter: DLQFilter, top: int = 10) -> DLQStats:
        if not replace(filter, queue=None).is_empty:
            return await super().dlq_stats(filter, top)  # a scan of the matching entries
        queues = await self._dlq_queues(filter)
        return await stats.counter_stats(
            self.conn, self.keys, self._clock(), queues, top=top, load_entry=self._dlq_entry
        )

    async def upgrade_dlq(self, queue: str) -> int:
        """Rewrite the queue's dead letter entries stored before counters existed (stats
        does it once by itself); return how many were rewritten."""
        return await stats.CounterStats(self.conn, self.keys, self._clock()).upgrade(queue)

    async def _dlq_entry(self, queue: str, job_id: str) -> DeadLetter | None:
        found = await self.reader.load([(queue, job_id)])
        return found[job_id][1] if job_id in found else None

    async def dlq_delete(self, job_ids: Sequence[str]) -> list[str]:
        where = await self.registry.locate(job_ids)
        by_queue: dict[str, list[str]] = defaultdict(list)
        for job_id in dict.fromkeys(job_ids):
            if job_id in where:
                by_queue[where[job_id]].append(job_id)
        deleted: set[str] = set()
        for queue, ids in by_queue.items():
            for start in range(0, len(ids), DELETE_CHUNK):
                reply = await scripts.dlq_delete(
                    self.conn.evaluate,
                    self.keys.queue(queue),
                    self._clock(),
                    ids[start : start + DELETE_CHUNK],
                )
                deleted.update(reply.ids)
        return [job_id for job_id in dict.fromkeys(job_ids) if job_id in deleted]

    async def dlq_expire(self, limit: int) -> list[str]:
        expired: list[str] = []
        for queue in await self.queues():
            while len(expired) < limit:
                size = min(DELETE_CHUNK, limit - len(expired))
                reply = await scripts.dlq_expire(
                    self.conn.evaluate, self.keys.queue(queue), self._clock(), size
                )
                expired += reply.ids
                if len(reply.ids) < size:
                    break
        return expired


def _distinct_chunks(indexes: Sequence[int], ids: Sequence[str]) -> list[list[int]]:
    """Split ``indexes`` in order into chunks of at most CHUNK with distinct job ids
    (a script applies its batch at once; a second move of a job must see the first)."""
    chunks: list[list[int]] = [[]]
    seen: set[str] = set()
    for index in indexes:
        if len(chunks[-1]) >= CHUNK or ids[index] in seen:
            chunks.append([])
            seen = set()
        chunks[-1].append(index)
        seen.add(ids[index])
    return [c for c in chunks if c]


def _by_queue(jobs: Sequence[Job]) -> dict[str, list[int]]:
    """The indexes of the jobs of each queue (a batch with an id twice is refused)."""
    if len({job.id for job in jobs}) < len(jobs):
        raise InvalidInput("a batch holds the same job id twice", field="id")
    by_queue: dict[str, list[int]] = defaultdict(list)
    for index, job in enumerate(jobs):
        by_queue[job.queue].append(index)
    return by_queue
