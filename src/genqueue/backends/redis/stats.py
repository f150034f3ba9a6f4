"""DLQ statistics from counters, without reading the entries.

Every entry added to or dropped from a queue's DLQ changes that queue's counters
(``dlq:counts``, see ``keys``) in the same script, so the figures of the whole DLQ (or
one queue of it) are one HGETALL per queue: totals, per kind/task/user/fingerprint/day,
and the tasks of each fingerprint; cost comes from the running ``dlq:cost`` sums. Only
the sample entry of each top fingerprint is read (the newest, from ``dlq:fp``). Counters
of a queue whose entries were stored before counters existed are made exact first, once
(``dlq_upgrade.lua``). Filtered statistics are a scan of the matching entries
(``Backend.dlq_stats``), which the indexes already narrow.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from genqueue.backends.base import day_of
from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import TAIL_END, KeySchema, dlq_member_id, value_prefix
from genqueue.entry import DeadLetter, DLQStats, FingerprintGroup

#: Entries rewritten per call of ``dlq_upgrade.lua`` (a bounded script time).
UPGRADE_BATCH = 500
EntryLoader = Callable[[str, str], Awaitable[DeadLetter | None]]
#: One server's pipeline, or a cluster's (split per node: every command has one key).
AnyPipeline = Pipeline | ClusterPipeline


class Counts:
    """The counters of several queues, added up in the order the indexes list values
    (queue by queue, values in index order), so that ties rank as they always did."""

    def __init__(self) -> None:
        self.total = 0
        self.values: dict[str, Counter[str]] = defaultdict(Counter)
        self.fp_tasks: dict[str, set[str]] = defaultdict(set)
        self.days: Counter[int] = Counter()

    def add(self, fields: dict[bytes, bytes]) -> None:
        by_kind: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for raw_name, raw_count in fields.items():
            name, number = raw_name.decode(), int(raw_count)
            if name == "n":
                self.total += number
            elif name == "u":
                by_kind["none"].append(("", number))
            elif ":" in name:
                prefix, _, rest = name.partition(":")
                by_kind[prefix].append((rest, number))
        for prefix, found in by_kind.items():
            found.sort(key=lambda item: value_prefix(item[0]).encode())
            for value, count in found:
                self._one(prefix, value, count)

    def _one(self, prefix: str, value: str, count: int) -> None:
        if prefix == "d":
            self.days[int(value)] += count
        elif prefix == "ft":
            fingerprint, task = _split_first(value)
            self.fp_tasks[fingerprint].add(task)
        elif prefix != "none":
            self.values[prefix][value] += count


def _hgetall(key: str) -> Callable[[AnyPipeline], object]:
    return lambda pipe: pipe.hgetall(key)


def _split_first(group: str) -> tuple[str, str]:
    """The value of the first ``value_prefix`` part of ``group``, and what follows it."""
    raw = group.encode()
    size = int(raw[:4])
    return raw[4 : 4 + size].decode(), raw[4 + size :].decode()


class CounterStats:
    def __init__(self, conn: Connection, keys: KeySchema, clock: str) -> None:
        self.conn = conn
        self.keys = keys
        self.clock = clock

    async def _each(self, what: str, build: Callable[[AnyPipeline], object]) -> list[Any]:
        async def run() -> list[Any]:
            pipe = self.conn.redis.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())

        return await self.conn.call(what, run)

    async def counters(self, queues: Sequence[str]) -> list[dict[bytes, bytes]]:
        """Each queue's counters, made exact first where they are not yet."""
        keys = [self.keys.queue(q)["dlq:counts"] for q in queues]

        def read(p: AnyPipeline) -> None:
            for queue, key in zip(queues, keys, strict=True):
                p.hgetall(key)
                p.hlen(self.keys.queue(queue)["dlq"])

        found = await self._each("HGETALL", read)
        out: list[dict[bytes, bytes]] = []
        for i, queue in enumerate(queues):
            fields, size = found[2 * i], int(found[2 * i + 1])
            if size and b"exact" not in fields:
                await self.upgrade(queue)
                [fields] = await self._each("HGETALL", _hgetall(keys[i]))
            out.append(fields)
        return out

    async def upgrade(self, queue: str) -> int:
        """Rewrite the queue's entries stored before counters existed; how many."""
        cursor, rewritten = "0", 0
        while True:
            reply = await scripts.dlq_upgrade(
                self.conn.evaluate,
                self.keys.queue(queue),
                self.clock,
                cursor=cursor,
                count=UPGRADE_BATCH,
            )
            rewritten += reply.rewritten
            cursor = reply.cursor
            if cursor == "0":
                return rewritten

    async def cost(self, queues: Sequence[str]) -> dict[str, float]:
        keys = [self.keys.queue(q)["dlq:cost"] for q in queues]
        found = await self._each("HGETALL", lambda p: [p.hgetall(k) for k in keys])
        out: dict[str, float] = {}
        for sums in found:
            for unit, amount in sums.items():
                name = unit.decode()
                out[name] = out.get(name, 0.0) + float(amount)
        return {k: round(v, 6) for k, v in out.items() if not math.isclose(v, 0, abs_tol=1e-9)}

    async def newest(self, queues: Sequence[str], prefix: str) -> tuple[str, str] | None:
        """(queue, job id) of the newest entry under ``prefix`` in ``dlq:fp``."""
        keys = [self.keys.queue(q)["dlq:fp"] for q in queues]
        found = await self._each(
            "ZREVRANGEBYLEX",
            lambda p: [
                p.zrevrangebylex(k, "(" + prefix + TAIL_END, "[" + prefix, 0, 1) for k in keys
            ],
        )
        best: tuple[str, str, str] | None = None
        for queue, members in zip(queues, found, strict=True):
            if members:
                tail = members[0].decode()[len(prefix) :]
                if best is None or tail > best[0]:
                    best = (tail, queue, dlq_member_id(tail))
        return (best[1], best[2]) if best else None


async def counter_stats(
    conn: Connection,
    keys: KeySchema,
    clock: str,
    queues: Sequence[str],
    *,
    top: int,
    load_entry: EntryLoader,
) -> DLQStats:
    """Statistics of every entry in ``queues``, from the counters."""
    cs = CounterStats(conn, keys, clock)
    counts = Counts()
    for fields in await cs.counters(queues):
        counts.add(fields)
    users = counts.values["u"]
    none = counts.total - sum(users.values())
    if none:
        users["(none)"] = none
    prints = counts.values["f"]
    groups = []
    for fingerprint, count in sorted(prints.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        tasks = sorted(counts.fp_tasks[fingerprint])
        groups.append(await _group(cs, queues, (fingerprint, count, tasks), load_entry))
    return DLQStats(
        total=counts.total,
        by_kind=dict(counts.values["k"].most_common()),
        by_task=dict(counts.values["t"].most_common()),
        by_user=dict(users.most_common()),
        by_day={day_of(day * 86400): n for day, n in sorted(counts.days.items()) if n},
        top_fingerprints=groups,
        cost_lost=await cs.cost(queues),
    )


async def _group(
    cs: CounterStats,
    queues: Sequence[str],
    found: tuple[str, int, list[str]],
    load_entry: EntryLoader,
) -> FingerprintGroup:
    fingerprint, count, tasks = found
    where = await cs.newest(queues, value_prefix(fingerprint))
    sample = await load_entry(*where) if where else None
    return FingerprintGroup.from_sample(fingerprint, count, tasks, sample)
