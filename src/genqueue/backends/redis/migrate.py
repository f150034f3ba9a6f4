"""Migrating a Redis from key layout 1 to 2 (see layout.py): the DLQ value indexes'
members get the tails layout 2 spells (``keys.dlq_tail``). Entries stored before version
2 (they name their members themselves) are rewritten first, by ``dlq_upgrade.lua``.

Every step is one script call on one queue, bounded and idempotent (a member already
rewritten is left alone), so a migration cut short by a crash is taken up again by the
next process that opens the Redis. Dead jobs and entries stored by layout 1 are read as
they are and need no rewriting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema, QueueKeys
from genqueue.backends.redis.stats import UPGRADE_BATCH

log = logging.getLogger("genqueue.redis")

#: Members examined per call of ``dlq_retail.lua``: ~10 us each in Redis when rewritten
#: (most of it spelling the tail in Lua), so a call holds Redis ~10 ms at most. The
#: members it rewrites sort after the old ones of their value, so the walk meets each
#: again, and skips it (~2 us).
RETAIL_BATCH = 1000
#: The DLQ value indexes whose members carry a tail.
INDEXES = ("dlq:user", "dlq:kind", "dlq:task", "dlq:fp")


async def to_layout_2(
    conn: Connection, keys: KeySchema, clock: str, *, renew: Callable[[], Awaitable[None]]
) -> int:
    """Migrate every queue; how many members were rewritten. ``renew`` is called after
    every script call (it keeps the migration's lock as needed)."""
    started = time.monotonic()
    raw = await conn.call("SMEMBERS", lambda: conn.redis.smembers(keys.queues_key))
    queues = sorted(q.decode() if isinstance(q, bytes) else q for q in raw)
    rewritten = 0
    for queue in queues:
        qkeys = keys.queue(queue)
        await _upgrade_entries(conn, qkeys, clock, renew)
        for index in INDEXES:
            rewritten += await _retail(conn, qkeys, clock, index, renew)
    log.info(
        "%s: key layout 2: rewrote %d DLQ index members in %d queues in %.1f s",
        conn.options.where,
        rewritten,
        len(queues),
        time.monotonic() - started,
    )
    return rewritten


async def _upgrade_entries(
    conn: Connection, keys: QueueKeys, clock: str, renew: Callable[[], Awaitable[None]]
) -> None:
    # Entries stored before version 2 each have a dlq:all member: none, nothing to do.
    if not await conn.call("ZCARD", lambda: conn.redis.zcard(keys["dlq:all"])):
        return
    cursor = "0"
    while True:
        reply = await scripts.dlq_upgrade(
            conn.evaluate, keys, clock, cursor=cursor, count=UPGRADE_BATCH
        )
        await renew()
        cursor = reply.cursor
        if cursor == "0":
            return


async def _retail(
    conn: Connection,
    keys: QueueKeys,
    clock: str,
    index: str,
    renew: Callable[[], Awaitable[None]],
) -> int:
    start, rewritten = "-", 0
    while start:
        reply = await scripts.dlq_retail(
            conn.evaluate, keys, clock, index=index, start=start, count=RETAIL_BATCH
        )
        await renew()
        start, rewritten = reply.start, rewritten + reply.rewritten
    return rewritten
