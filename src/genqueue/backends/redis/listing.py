"""Read paths that span queues: job and dead letter listings and counts.

Each queue keeps its own lex indexes (see ``keys``), so a listing across queues is a
k-way merge: one source per (queue, index), each read newest first in chunks with
ZREVRANGEBYLEX, merged on the member tail ``time_key + id``. That tail is a total order
(time, then id), so a page's cursor is simply the last (time, id) shown, the same cursor
every backend uses, and each source resumes strictly below it. Filters without an index
(a job's task or user; a second DLQ field) are applied to the loaded records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from genqueue.backends.base import JobQuery
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import STATES, KeySchema, lex_range, member_id, value_prefix
from genqueue.entry import DeadLetter, DLQFilter, Page, decode_cursor, encode_cursor
from genqueue.job import Job

#: Loads jobs (with entries) by (queue, id); missing ones are left out.
Loader = Callable[[Sequence[tuple[str, str]]], Awaitable[dict[str, tuple[Job, DeadLetter | None]]]]


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


async def _refill(conn: Connection, sources: Sequence[LexSource], chunk: int) -> None:
    empty = [s for s in sources if not s.buffer and not s.exhausted]
    if not empty:
        return

    async def read() -> list[list[bytes]]:
        pipe = conn.redis.pipeline(transaction=False)
        for s in empty:
            pipe.zrevrangebylex(s.key, s.high, s.low, 0, chunk)
        return list(await pipe.execute())

    for source, members in zip(empty, await conn.call("ZREVRANGEBYLEX", read), strict=True):
        if len(members) < chunk:
            source.exhausted = True
        if members:
            source.high = "(" + members[-1].decode()
        cut = len(source.prefix.encode())
        for raw in members:
            source.buffer.append((raw[cut:].decode(), member_id(raw)))


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


# -- dead letters ---------------------------------------------------------------------------

_VALUE_FIELDS = (("dlq:fp", "fingerprint"), ("dlq:user", "user_id"), ("dlq:task", "task"))


def _index_for(filter: DLQFilter) -> tuple[str, str, int]:
    """(index name, member prefix, number of value filters) for a filter."""
    values: list[tuple[str, str]] = []
    for name, attr in _VALUE_FIELDS:
        value = getattr(filter, attr)
        if value is not None:
            values.append((name, value))
    if filter.error_kind is not None:
        values.append(("dlq:kind", filter.error_kind.value))
    if not values:
        return "dlq:all", "", 0
    name, value = values[0]  # the most selective index first (fingerprint, user, task, kind)
    return name, value_prefix(value), len(values)


def dlq_sources(
    keys: KeySchema,
    queues: Sequence[str],
    filter: DLQFilter,
    after: tuple[float, str] | None,
) -> tuple[list[LexSource], int]:
    name, prefix, values = _index_for(filter)
    high, low = lex_range(prefix, filter.since, filter.until, after)
    return [LexSource(q, keys.queue(q)[name], prefix, high, low) for q in queues], values


async def dlq_list(
    conn: Connection,
    keys: KeySchema,
    queues: Sequence[str],
    filter: DLQFilter,
    *,
    cursor: str | None,
    limit: int,
    load: Loader,
) -> Page[DeadLetter]:
    sources, _ = dlq_sources(keys, queues, filter, decode_cursor(cursor))

    def keep(_: Job, entry: DeadLetter | None) -> bool:
        return entry is not None and filter.matches(entry)

    batch = limit + 1
    found = await _collect(merged(conn, sources, batch), load, keep, limit + 1, batch)
    entries = [entry for _, entry in found[:limit] if entry is not None]
    more = len(found) > limit
    last = entries[-1] if entries else None
    return Page(entries, encode_cursor(last.failed_at, last.job_id) if more and last else None)


async def dlq_count(
    conn: Connection, keys: KeySchema, queues: Sequence[str], filter: DLQFilter, load: Loader
) -> int:
    sources, values = dlq_sources(keys, queues, filter, None)
    if values <= 1:
        # One index answers exactly: count its range in each queue.
        async def count() -> list[int]:
            pipe = conn.redis.pipeline(transaction=False)
            for s in sources:
                pipe.zlexcount(s.key, s.low, s.high)
            return list(await pipe.execute())

        return sum(await conn.call("ZLEXCOUNT", count))
    total = 0
    batch = 500
    pending: list[tuple[str, str]] = []
    async for candidate in merged(conn, sources, batch):
        pending.append(candidate)
        if len(pending) >= batch:
            total += await _count_matching(pending, filter, load)
            pending = []
    if pending:
        total += await _count_matching(pending, filter, load)
    return total


async def _count_matching(
    pending: Sequence[tuple[str, str]], filter: DLQFilter, load: Loader
) -> int:
    found = await load(pending)
    return sum(1 for _, entry in found.values() if entry is not None and filter.matches(entry))
