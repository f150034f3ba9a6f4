"""The version of the key layout a Redis holds (``<prefix>:layout``), so that no process
works on data laid out by a newer genqueue (it would misread it, and write what the newer
one misreads), and data laid out by an older one is migrated before it is used.

The first process to open a Redis that has none writes this release's version (layout 1
if it holds queues already: releases before the key wrote them). Layout 2 keeps a dead
job whole in its dead letter entry and spells the DLQ indexes' member tails in 32
characters instead of 48 hex digits (see keys.py). The first process of this release
that opens a layout 1 Redis rewrites the DLQ indexes' members (migrate.py; the entries
and jobs are read as they are), then raises the version; every other process that opens
it meanwhile waits for that. Processes of the older release must be stopped first: one
still running would misread what layout 2 writes, and one that starts afterwards
refuses to, with a message that says to upgrade. PostgreSQL and SQLite check their
migration versions the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema
from genqueue.backends.redis.migrate import to_layout_2
from genqueue.errors import ConfigError

log = logging.getLogger("genqueue.redis")

#: The key layout this release reads and writes (keys.py describes it).
LAYOUT = 2
#: How long a migration's lock lasts unless renewed (every LOCK_SECONDS / 3 at most).
LOCK_SECONDS = 30
#: How often a process waiting for another's migration looks again.
WAIT_SECONDS = 0.5


async def check_layout(conn: Connection, keys: KeySchema, clock: str) -> int:
    """The layout version of this Redis as this process leaves it: written first if it
    has none, migrated to this release's if older; raises ``ConfigError`` if a newer
    genqueue laid it out."""
    version = await _version(conn, keys)
    waited = False
    while version < LAYOUT:
        lock = _Lock(conn, keys)
        if await lock.take():
            try:
                await to_layout_2(conn, keys, clock, renew=lock.renew)
                await conn.call("SET", lambda: conn.redis.set(keys.layout_key, LAYOUT))
            finally:
                await lock.release()
        else:
            if not waited:
                log.info(
                    "%s: another process is migrating the key layout; waiting", conn.options.where
                )
                waited = True
            await asyncio.sleep(WAIT_SECONDS)
        version = await _version(conn, keys)
    return version


async def _version(conn: Connection, keys: KeySchema) -> int:
    async def read() -> list[Any]:
        pipe = conn.redis.pipeline(transaction=False)
        pipe.get(keys.layout_key)
        pipe.exists(keys.queues_key)
        return list(await pipe.execute())

    stored, has_queues = await conn.call("GET", read)
    if stored is None:
        # Releases before the layout key wrote layout 1 and no key: queues without one
        # are theirs. The first process to open an empty Redis writes this layout.
        first = 1 if has_queues else LAYOUT

        async def write() -> Any:
            pipe = conn.redis.pipeline(transaction=False)
            pipe.set(keys.layout_key, first, nx=True)
            pipe.get(keys.layout_key)
            return (await pipe.execute())[1]

        stored = await conn.call("SET", write)
    text = stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)
    version = int(text) if text.isdigit() else 0
    if not 1 <= version <= LAYOUT:
        raise ConfigError(
            f"{conn.options.where}: key prefix {keys.prefix!r} holds genqueue data in key "
            f"layout {text!r}, which this genqueue (layout {LAYOUT}) does not know: a newer "
            "genqueue wrote it; upgrade genqueue"
        )
    return version


class _Lock:
    """The migration's lock (``<prefix>:migrating``), named after this process for
    whoever looks; renewed when a third of its time has passed (not on every call: each
    renewal is a round trip)."""

    def __init__(self, conn: Connection, keys: KeySchema) -> None:
        self.conn, self.key = conn, keys.migration_key
        self.renewed = time.monotonic()

    async def take(self) -> bool:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        taken = await self.conn.call(
            "SET", lambda: self.conn.redis.set(self.key, holder, nx=True, ex=LOCK_SECONDS)
        )
        self.renewed = time.monotonic()
        return bool(taken)

    async def renew(self) -> None:
        if time.monotonic() - self.renewed < LOCK_SECONDS / 3:
            return
        await self.conn.call("EXPIRE", lambda: self.conn.redis.expire(self.key, LOCK_SECONDS))
        self.renewed = time.monotonic()

    async def release(self) -> None:
        await self.conn.call("DEL", lambda: self.conn.redis.delete(self.key))
