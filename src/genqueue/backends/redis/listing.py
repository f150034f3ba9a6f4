"""Read paths that span queues: job and dead letter listings and counts.

Each queue keeps its own lex indexes (see ``keys``), so a listing across queues is a
k-way merge: one source per (queue, index), each read newest first in chunks with
ZREVRANGEBYLEX, merged on the member tail ``time_key + id`` (spelled in fewer characters
in the DLQ's indexes: ``keys.dlq_tail``). That tail is a total order (time, then id), so
a page's cursor is simply the last (time, id) shown, the same cursor every backend uses,
and each source resumes strictly below it. Filters without an index (a job's task or
user) are applied to the loaded records. A DLQ filter on two or more fields reads the
index of the rarest value through ``dlq_scan``, which tests the other values inside
Redis on their own indexes (an entry's members share one tail): only matching members
come back, and only the jobs of the page are loaded. The whole DLQ, newest first, is the
merge of ``dlq:kind``'s range of each error kind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genqueue.backends.base import JobQuery
from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import (
    STATES,
    KeySchema,
    QueueKeys,
    dlq_member_id,
    lex_range,
    member_id,
    tail_of_hex,
    value_prefix,
)
from genqueue.classify import ErrorKind
from genqueue.entry import DeadLetter, DLQFilter, Page, decode_cursor, encode_cursor
from genqueue.job import Job, JobState

#: Loads jobs (with entries) by (queue, id); missing ones are left out.
Loader = Callable[[Sequence[tuple[str, str]]], Awaitable[dict[str, tuple[Job, DeadLetter | None]]]]
#: Index members one ``dlq_scan`` call examines at most: ~1.3 us each in Redis (~0.3 to
#: read it, ~0.5 per other field to test it), so one call holds Redis ~3 ms at most. A
#: scan that found too few is called again from where it stopped.
SCAN_BUDGET = 2000


@dataclass(frozen=True)
class Scan:
    """Where a source reads through ``dlq_scan``: only members whose entries also have
    the filter's other values (probes: (index, value prefix)) come back."""

    keys: QueueKeys
    index: str
    probes: tuple[tuple[str, str], ...]
    clock: str

    def call(self, source: LexSource, want: int) -> scripts.Call:
        bounds = (source.high, source.low)
        return scripts.scan_call(
            self.keys,
            self.clock,
            self.index,
            bounds=bounds,
            probes=self.probes,
            want=want,
            budget=SCAN_BUDGET,
        )


@dataclass
class LexSource:
    """One lex index of one queue, read newest first from ``high`` down to ``low``."""

    queue: str
    key: str
    prefix: str
    high: str
    low: str
    buffer: deque[tuple[str, str]] = field(default_factory=deque)
    exhausted: bool = False
    scan: Scan | None = None
    #: The job id of a member (DLQ members end with a ``dlq_tail``).
    ids: Callable[[bytes], str] = member_id

    def take(self, members: Sequence[bytes], last: bytes | None, exhausted: bool) -> None:
        self.exhausted = exhausted
        if last is not None:
            self.high = "(" + last.decode()
        cut = len(self.prefix.encode())
        for raw in members:
            self.buffer.append((raw[cut:].decode(), self.ids(raw)))


async def _refill(conn: Connection, sources: Sequence[LexSource], chunk: int) -> None:
    """Fill every source that is empty and not exhausted (a scan may examine its budget
    and find nothing: it is asked again, from where it stopped)."""
    while empty := [s for s in sources if not s.buffer and not s.exhausted]:
        plain = [s for s in empty if s.scan is None]
        scans = [s for s in empty if s.scan is not None]
        if plain:
            await _read_plain(conn, plain, chunk)
        if scans:
            await _read_scans(conn, scans, chunk)


async def _read_plain(conn: Connection, sources: Sequence[LexSource], chunk: int) -> None:
    async def read() -> list[list[bytes]]:
        pipe = conn.redis.pipeline(transaction=False)
        for s in sources:
            pipe.zrevrangebylex(s.key, s.high, s.low, 0, chunk)
        return list(await pipe.execute())

    for source, members in zip(sources, await conn.call("ZREVRANGEBYLEX", read), strict=True):
        source.take(members, members[-1] if members else None, len(members) < chunk)


async def _read_scans(conn: Connection, sources: Sequence[LexSource], chunk: int) -> None:
    calls = [s.scan.call(s, chunk) for s in sources if s.scan is not None]
    for source, raw in zip(sources, await conn.evaluate_many(calls), strict=True):
        reply = scripts.scan_reply(raw)
        source.take(reply.members, reply.last, reply.exhausted)


async def merged(
    conn: Connection, sources: Sequence[LexSource], chunk: int
) -> AsyncIterator[tuple[str, str]]:
    """(queue, id) of every member of every source, newest first across sources."""
    while True:
        await _refill(conn, sources, chunk)
        live = [s for s in sources if s.buffer]
        if not live:
            return
        best = max(live, key=lambda s: s.buffer[0][0])
        _, job_id = best.buffer.popleft()
        yield best.queue, job_id


async def _collect(
    candidates: AsyncIterator[tuple[str, str]],
    load: Loader,
    keep: Callable[[Job, DeadLetter | None], bool],
    want: int,
    batch: int,
) -> list[tuple[Job, DeadLetter | None]]:
    """The first ``want`` candidates that load and pass ``keep``, in candidate order."""
    out: list[tuple[Job, DeadLetter | None]] = []
    pending: list[tuple[str, str]] = []
    seen: set[str] = set()  # a job that changed state meanwhile can be in two indexes

    async def flush() -> None:
        found = await load(pending)
        for _, job_id in pending:
            item = found.get(job_id)
            if item is not None and job_id not in seen and keep(*item) and len(out) < want:
                out.append(item)
                seen.add(job_id)
        pending.clear()

    async for candidate in candidates:
        pending.append(candidate)
        if len(pending) >= batch:
            await flush()
            if len(out) >= want:
                return out
    if pending:
        await flush()
    return out


# -- jobs -----------------------------------------------------------------------------------


async def list_jobs(
    conn: Connection, keys: KeySchema, queues: Sequence[str], query: JobQuery, load: Loader
) -> Page[Job]:
    after = decode_cursor(query.cursor)
    states = sorted(s.value for s in query.states) if query.states is not None else list(STATES)
    high, low = lex_range("", since=query.since, until=query.until, before=after)
    sources = [LexSource(q, keys.queue(q).jobs(s), "", high, low) for q in queues for s in states]
    filtered = query.task is not None or query.user_id is not None
    batch = query.limit + 1 if not filtered else max(query.limit + 1, 200)

    def keep(job: Job, _: DeadLetter | None) -> bool:
        return (
            (query.states is None or job.state in query.states)
            and (query.task is None or job.task == query.task)
            and (query.user_id is None or job.user_id == query.user_id)
        )

    found = await _collect(merged(conn, sources, batch), load, keep, query.limit + 1, batch)
    jobs = [job for job, _ in found[: query.limit]]
    more = len(found) > query.limit
    return Page(jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id) if more and jobs else None)


async def counts(
    conn: Connection, keys: KeySchema, queues: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Jobs per queue and state (states without jobs left out): one pipeline of ZCARDs."""
    states = JobState

    async def cards() -> list[int]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue in queues:
            for state in states:
                pipe.zcard(keys.queue(queue).jobs(state.value))
        return list(await pipe.execute())

    values = iter(await conn.call("ZCARD", cards))
    out: dict[str, dict[str, int]] = {}
    for queue in queues:
        found = {state.value: int(next(values)) for state in states}
        found = {s: n for s, n in found.items() if n}
        if found:
            out[queue] = found
    return out


async def oldest_ready(
    conn: Connection, keys: KeySchema, queues: Sequence[str]
) -> dict[str, float]:
    """Per queue with queued jobs: the earliest due time among them."""

    async def heads() -> list[list[tuple[bytes, float]]]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue in queues:  # one key per command: fine on Cluster
            pipe.zrange(keys.queue(queue)["ready"], 0, 0, withscores=True)
        return list(await pipe.execute())

    found = await conn.call("ZRANGE", heads)
    return {queue: float(head[0][1]) for queue, head in zip(queues, found, strict=True) if head}


# -- dead letters ---------------------------------------------------------------------------

#: (index, filter attribute, counter prefix) of each indexed DLQ field, in the order of
#: their usual selectivity (fingerprint, user, task, kind).
_VALUE_FIELDS = (
    ("dlq:fp", "fingerprint", "f:"),
    ("dlq:user", "user_id", "u:"),
    ("dlq:task", "task", "t:"),
    ("dlq:kind", "error_kind", "k:"),
)


@dataclass(frozen=True)
class _Plan:
    """How a filter is read: an index, its member prefixes (one value's, or every error
    kind's for the whole DLQ; none when the counters say nothing matches), and the other
    fields' values tested on each member (see ``dlq_scan``)."""

    index: str
    prefixes: list[str]
    probes: tuple[tuple[str, str], ...]


def _values(filter: DLQFilter) -> list[tuple[str, str, str]]:
    """(index, value, counter name) of each indexed field the filter sets."""
    out = []
    for name, attr, counter in _VALUE_FIELDS:
        value = getattr(filter, attr)
        if value is not None:
            text = value.value if isinstance(value, ErrorKind) else value
            out.append((name, text, counter + text))
    return out


def _plan(filter: DLQFilter, counts: dict[str, int] | None = None) -> _Plan:
    values = _values(filter)
    if not values:
        return _Plan("dlq:kind", [value_prefix(kind.value) for kind in ErrorKind], ())
    if counts is not None:
        # Exact counters: the index of the rarest value is read (a rare task beats a
        # busy user), the next rarest tested first, and a value no entry has means
        # nothing matches.
        if any(counts[v[2]] == 0 for v in values):
            return _Plan(values[0][0], [], ())
        values.sort(key=lambda v: counts[v[2]])
    (name, value, _), *others = values
    probes = tuple((index, value_prefix(v)) for index, v, _ in others)
    return _Plan(name, [value_prefix(value)], probes)


async def _counts(
    conn: Connection, keys: KeySchema, queues: Sequence[str], filter: DLQFilter
) -> dict[str, int] | None:
    """The counters of a filter on two or more fields, summed over the queues; None when
    there is one field or less, or when some queue's counters are not exact yet."""
    names = [v[2] for v in _values(filter)]
    if len(names) < 2:
        return None

    async def read() -> list[Any]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.hlen(keys.queue(queue)["dlq"])
            pipe.hmget(keys.queue(queue)["dlq:counts"], ["exact", *names])
        return list(await pipe.execute())

    replies = await conn.call("HMGET", read)
    totals = dict.fromkeys(names, 0)
    for size, (exact, *found) in zip(replies[::2], replies[1::2], strict=True):
        if not size:
            continue  # no entries: nothing to count
        if exact is None:
            return None
        for name, raw in zip(names, found, strict=True):
            totals[name] += int(raw or 0)
    return totals


def dlq_sources(
    keys: KeySchema,
    queues: Sequence[str],
    filter: DLQFilter,
    after: tuple[float, str] | None,
    *,
    clock: str,
    counts: dict[str, int] | None = None,
) -> list[LexSource]:
    plan = _plan(filter, counts)
    sources = []
    for prefix in plan.prefixes:
        high, low = lex_range(prefix, filter.since, filter.until, after, spell=tail_of_hex)
        for q in queues:
            qkeys = keys.queue(q)
            scan = Scan(qkeys, plan.index, plan.probes, clock) if plan.probes else None
            source = LexSource(
                q, qkeys[plan.index], prefix, high, low, scan=scan, ids=dlq_member_id
            )
            sources.append(source)
    return sources


async def dlq_list(
    conn: Connection,
    keys: KeySchema,
    queues: Sequence[str],
    filter: DLQFilter,
    *,
    cursor: str | None,
    limit: int,
    load: Loader,
    clock: str,
) -> Page[DeadLetter]:
    counts = await _counts(conn, keys, queues, filter)
    sources = dlq_sources(keys, queues, filter, decode_cursor(cursor), clock=clock, counts=counts)

    def keep(_: Job, entry: DeadLetter | None) -> bool:
        return entry is not None and filter.matches(entry)

    batch = limit + 1
    found = await _collect(merged(conn, sources, batch), load, keep, batch, batch)
    entries = [entry for _, entry in found[:limit] if entry is not None]
    more = len(found) > limit
    last = entries[-1] if entries else None
    return Page(entries, encode_cursor(last.failed_at, last.job_id) if more and last else None)


async def dlq_count(
    conn: Connection, keys: KeySchema, queues: Sequence[str], filter: DLQFilter, clock: str
) -> int:
    counts = await _counts(conn, keys, queues, filter)
    sources = dlq_sources(keys, queues, filter, None, clock=clock, counts=counts)
    if all(s.scan is None for s in sources):
        # One index answers exactly: count its range in each queue.
        async def count() -> list[int]:
            pipe = conn.redis.pipeline(transaction=False)
            for s in sources:
                pipe.zlexcount(s.key, s.low, s.high)
            return list(await pipe.execute())

        return sum(await conn.call("ZLEXCOUNT", count))
    total = 0
    for source in sources:  # the scans match exactly
        while not source.exhausted:
            assert source.scan is not None
            reply = scripts.scan_reply(await conn.evaluate(*source.scan.call(source, SCAN_BUDGET)))
            source.take([], reply.last, reply.exhausted)
            total += len(reply.members)
    return total
