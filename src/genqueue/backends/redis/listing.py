"""Read paths that span queues: job and dead letter listings and counts.

Each queue keeps its own lex indexes (see ``keys``), so a listing across queues is a
k-way merge: one source per (queue, index), each read newest first in chunks with
ZREVRANGEBYLEX, merged on the member tail ``time_key + id``. That tail is a total order
(time, then id), so a page's cursor is simply the last (time, id) shown, the same cursor
every backend uses, and each source resumes strictly below it. Filters without an index
(a job's task or user) are applied to the loaded records. A second DLQ field is matched
on the small stored entries first (``Entries``), and only the jobs of the page are
loaded: a filter that keeps one candidate in ten reads ten entries, not ten jobs.
The whole DLQ, newest first, is the merge of ``dlq:kind``'s range of each error kind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from genqueue.backends.base import JobQuery
from genqueue.backends.redis.codec import entry_record
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import STATES, KeySchema, lex_range, member_id, value_prefix
from genqueue.classify import ErrorKind
from genqueue.entry import DeadLetter, DLQFilter, Page, decode_cursor, encode_cursor
from genqueue.job import Job, JobState

#: Loads jobs (with entries) by (queue, id); missing ones are left out.
Loader = Callable[[Sequence[tuple[str, str]]], Awaitable[dict[str, tuple[Job, DeadLetter | None]]]]
#: Candidates whose entries are read at once when a second field is filtered on.
SCAN_BATCH = 500


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

_VALUE_FIELDS = (("dlq:fp", "fingerprint"), ("dlq:user", "user_id"), ("dlq:task", "task"))


def _index_for(filter: DLQFilter) -> tuple[str, list[str], int]:
    """(index name, member prefixes, number of value filters) for a filter: the prefixes
    of one value, or of every error kind for the whole DLQ."""
    values: list[tuple[str, str]] = []
    for name, attr in _VALUE_FIELDS:
        value = getattr(filter, attr)
        if value is not None:
            values.append((name, value))
    if filter.error_kind is not None:
        values.append(("dlq:kind", filter.error_kind.value))
    if not values:
        return "dlq:kind", [value_prefix(kind.value) for kind in ErrorKind], 0
    name, value = values[0]  # the most selective index first (fingerprint, user, task, kind)
    return name, [value_prefix(value)], len(values)


def dlq_sources(
    keys: KeySchema,
    queues: Sequence[str],
    filter: DLQFilter,
    after: tuple[float, str] | None,
) -> tuple[list[LexSource], int]:
    name, prefixes, values = _index_for(filter)
    sources = []
    for prefix in prefixes:
        high, low = lex_range(prefix, filter.since, filter.until, after)
        sources += [LexSource(q, keys.queue(q)[name], prefix, high, low) for q in queues]
    return sources, values


async def _entries(
    conn: Connection, keys: KeySchema, items: Sequence[tuple[str, str]]
) -> list[bytes | None]:
    """The stored entries of (queue, id) items, in order (None where gone): one HMGET
    per queue."""
    by_queue: dict[str, list[int]] = {}
    for index, (queue, _) in enumerate(items):
        by_queue.setdefault(queue, []).append(index)
    if not by_queue:
        return []

    async def read() -> list[list[bytes | None]]:
        pipe = conn.redis.pipeline(transaction=False)
        for queue, indexes in by_queue.items():
            pipe.hmget(keys.queue(queue)["dlq"], [items[i][1] for i in indexes])
        return list(await pipe.execute())

    out: list[bytes | None] = [None] * len(items)
    for indexes, found in zip(by_queue.values(), await conn.call("HMGET", read), strict=True):
        for index, raw in zip(indexes, found, strict=True):
            out[index] = raw
    return out


async def _matching(
    conn: Connection,
    keys: KeySchema,
    candidates: AsyncIterator[tuple[str, str]],
    filter: DLQFilter,
    want: int | None,
) -> AsyncIterator[tuple[str, str]]:
    """The candidates whose stored entries match ``filter`` (at most ``want``)."""
    kept = 0
    async for batch in _batches(candidates, SCAN_BATCH):
        for item, raw in zip(batch, await _entries(conn, keys, batch), strict=True):
            if raw is not None and filter.matches_record(entry_record(raw, item[1], item[0])):
                yield item
                kept += 1
                if want is not None and kept >= want:
                    return


async def _batches(
    items: AsyncIterator[tuple[str, str]], size: int
) -> AsyncIterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    sources, values = dlq_sources(keys, queues, filter, decode_cursor(cursor))
    batch = limit + 1
    candidates = merged(conn, sources, batch)
    if values > 1:  # the index answers one field: match the others on the entries
        candidates = _matching(conn, keys, merged(conn, sources, SCAN_BATCH), filter, batch)

    def keep(_: Job, entry: DeadLetter | None) -> bool:
        return entry is not None and filter.matches(entry)

    found = await _collect(candidates, load, keep, limit + 1, batch)
    entries = [entry for _, entry in found[:limit] if entry is not None]
    more = len(found) > limit
    last = entries[-1] if entries else None
    return Page(entries, encode_cursor(last.failed_at, last.job_id) if more and last else None)


async def dlq_count(
    conn: Connection, keys: KeySchema, queues: Sequence[str], filter: DLQFilter
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
    async for _ in _matching(conn, keys, merged(conn, sources, SCAN_BATCH), filter, None):
        total += 1
    return total
