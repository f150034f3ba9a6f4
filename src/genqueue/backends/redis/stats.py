"""DLQ statistics from the indexes, without reading the entries.

For the whole DLQ (or one queue of it) every figure comes from index sizes: totals from
ZCARD, per-day counts from ZLEXCOUNT over day ranges of ``dlq:all``, per-user/kind/task/
fingerprint counts from a bounded skip scan of each value index (``dlq_groups.lua``),
the tasks of a fingerprint from ``dlq:fptask``, and cost from the running ``dlq:cost``
sums. Only the sample entry of each top fingerprint is read. Filtered statistics are a
scan of the matching entries (``Backend.dlq_stats``), which the indexes already narrow.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from genqueue.backends.base import day_of
from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import (
    DLQ_VALUE_INDEXES,
    KeySchema,
    member_id,
    split_prefixes,
    time_from_key,
    time_key,
    value_prefix,
)
from genqueue.entry import DeadLetter, DLQStats, FingerprintGroup

GROUPS_PER_CALL = 500
EntryLoader = Callable[[str, str], Awaitable[DeadLetter | None]]
#: One server's pipeline, or a cluster's (split per node: every command has one key).
AnyPipeline = Pipeline | ClusterPipeline


class IndexStats:
    def __init__(self, conn: Connection, keys: KeySchema, clock: str) -> None:
        self.conn = conn
        self.keys = keys
        self.clock = clock

    async def groups(self, queue: str, index: str, within: str = "") -> Counter[str]:
        """Entries per group of one value index of one queue."""
        out: Counter[str] = Counter()
        resume = ""
        while True:
            reply = await scripts.dlq_groups(
                self.conn.evaluate,
                self.keys.queue(queue),
                self.clock,
                index=DLQ_VALUE_INDEXES.index(index) + 1,
                resume=resume,
                limit=GROUPS_PER_CALL,
                within=within,
            )
            out.update(dict(reply.groups))
            if not reply.resume:
                return out
            resume = reply.resume

    async def values(self, queues: Sequence[str], index: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for queue in queues:
            for group, count in (await self.groups(queue, index)).items():
                out[split_prefixes(group)[0]] += count
        return out

    async def _each(self, what: str, build: Callable[[AnyPipeline], object]) -> list[Any]:
        async def run() -> list[Any]:
            pipe = self.conn.redis.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())

        return await self.conn.call(what, run)

    async def totals(self, queues: Sequence[str]) -> int:
        keys = [self.keys.queue(q)["dlq:all"] for q in queues]
        found = await self._each("ZCARD", lambda p: [p.zcard(k) for k in keys])
        return sum(int(n) for n in found)

    async def by_day(self, queues: Sequence[str]) -> dict[str, int]:
        keys = [self.keys.queue(q)["dlq:all"] for q in queues]

        def ends(p: AnyPipeline) -> None:
            for k in keys:
                p.zrange(k, 0, 0)
                p.zrange(k, -1, -1)

        found = [m[0].decode() for m in await self._each("ZRANGE", ends) if m]
        if not found:
            return {}
        times = [time_from_key(m[:16]) for m in found]
        first = datetime.fromtimestamp(min(times), UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        days = []
        while first.timestamp() <= max(times):
            days.append(first)
            first += timedelta(days=1)

        def counts(p: AnyPipeline) -> None:
            for day in days:
                low, high = (
                    time_key(day.timestamp()),
                    time_key((day + timedelta(days=1)).timestamp()),
                )
                for k in keys:
                    p.zlexcount(k, "[" + low, "(" + high)

        found_counts = iter(await self._each("ZLEXCOUNT", counts))
        out = {}
        for day in days:
            total = sum(int(next(found_counts)) for _ in keys)
            if total:
                out[day_of(day.timestamp())] = total
        return out

    async def cost(self, queues: Sequence[str]) -> dict[str, float]:
        keys = [self.keys.queue(q)["dlq:cost"] for q in queues]
        found = await self._each("HGETALL", lambda p: [p.hgetall(k) for k in keys])
        out: dict[str, float] = {}
        for sums in found:
            for unit, amount in sums.items():
                name = unit.decode()
                out[name] = out.get(name, 0.0) + float(amount)
        return {k: round(v, 6) for k, v in out.items() if not math.isclose(v, 0, abs_tol=1e-9)}

    async def newest(
        self, queues: Sequence[str], index: str, prefix: str
    ) -> tuple[str, str] | None:
        """(queue, job id) of the newest entry under ``prefix`` in an index."""
        keys = [self.keys.queue(q)[index] for q in queues]
        found = await self._each(
            "ZREVRANGEBYLEX",
            lambda p: [p.zrevrangebylex(k, "(" + prefix + "g", "[" + prefix, 0, 1) for k in keys],
        )
        best: tuple[str, str, str] | None = None
        for queue, members in zip(queues, found, strict=True):
            if members:
                tail = members[0].decode()[len(prefix) :]
                if best is None or tail > best[0]:
                    best = (tail, queue, member_id(tail))
        return (best[1], best[2]) if best else None


async def index_stats(
    conn: Connection,
    keys: KeySchema,
    clock: str,
    queues: Sequence[str],
    *,
    top: int,
    load_entry: EntryLoader,
) -> DLQStats:
    """Statistics of every entry in ``queues``, from the indexes."""
    ix = IndexStats(conn, keys, clock)
    total = await ix.totals(queues)
    users = await ix.values(queues, "dlq:user")
    none = total - sum(users.values())
    if none:
        users["(none)"] = none
    prints = await ix.values(queues, "dlq:fp")
    groups = []
    for fingerprint, count in sorted(prints.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        groups.append(await _group(ix, queues, fingerprint, count, load_entry))
    return DLQStats(
        total=total,
        by_kind=dict((await ix.values(queues, "dlq:kind")).most_common()),
        by_task=dict((await ix.values(queues, "dlq:task")).most_common()),
        by_user=dict(users.most_common()),
        by_day=await ix.by_day(queues),
        top_fingerprints=groups,
        cost_lost=await ix.cost(queues),
    )


async def _group(
    ix: IndexStats, queues: Sequence[str], fingerprint: str, count: int, load_entry: EntryLoader
) -> FingerprintGroup:
    prefix = value_prefix(fingerprint)
    tasks: set[str] = set()
    for queue in queues:
        for group in await ix.groups(queue, "dlq:fptask", within=prefix):
            tasks.add(split_prefixes(group)[1])
    where = await ix.newest(queues, "dlq:fp", prefix)
    sample = await load_entry(*where) if where else None
    error = sample.job.last_error if sample else None
    return FingerprintGroup(
        fingerprint=fingerprint,
        count=count,
        error_kind=sample.error_kind.value if sample else "",
        error_type=error.type if error else "",
        sample_message=error.message if error else (sample.reason if sample else ""),
        tasks=sorted(tasks),
    )
