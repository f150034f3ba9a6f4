"""Waking idle workers the moment jobs become ready (LISTEN/NOTIFY).

A trigger on ``jobs`` (migration 0001) sends ``NOTIFY "genqueue.<schema>", '<queue>'``
whenever a job becomes queued; PostgreSQL delivers it when that transaction commits. An
idle worker waits here instead of sleeping a whole poll interval.

The listening runs on a dedicated connection, outside the pool (a pooled connection is
shared and would miss notifications between uses), opened the first time a worker waits.
If that connection drops (server restart, network failure, idle timeout), waiting
degrades to polling: ``wait`` returns after its timeout, as on a backend without
wake-ups, so a lost notification only ever costs latency, never a job. Meanwhile the
listener reconnects with backoff (0.1 s doubling to 5 s). Each time it starts to listen
(the first time too) it looks once for queued jobs of the wanted queues and wakes the
waiters if there are any: jobs that became ready before the LISTEN took effect sent
their notification to nobody, and anything committed after that look notifies. The
connection is checked every ``HEALTH_EVERY`` seconds, so a silently dead one is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from genqueue.backends.remote import keep_subscribed

log = logging.getLogger("genqueue.postgres")

#: Seconds between liveness checks of the listening connection while nothing arrives.
HEALTH_EVERY = 15.0


def channel(schema: str) -> str:
    return f"genqueue.{schema}"


class Listener:
    def __init__(self, conninfo: str, schema: str, ready_sql: str) -> None:
        self._conninfo = conninfo
        self._channel = channel(schema)
        #: Any queued job in the queues given (a list)? Run once LISTEN has taken effect.
        self._ready_sql = ready_sql
        self._wanted: set[str] = set()
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[object] | None = None
        #: True while the connection listens (tests and diagnostics).
        self.listening = False

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        self._wanted.update(queues)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="genqueue-postgres-listen")
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()

    async def _read(self) -> None:
        first = True

        async def session(connected: Callable[[], None]) -> None:
            nonlocal first
            await self._listen()
            first = False
            connected()
            await self._receive()

        async def lost(exc: Exception) -> None:
            nonlocal first
            if self.listening or first:
                log.warning(
                    "PostgreSQL wake-up connection lost (%s); polling until it is back", exc
                )
            first = False
            await self._drop()

        await keep_subscribed(session, lost)

    async def _listen(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self.listening = True
        cur = await self._conn.execute(self._ready_sql, (sorted(self._wanted),))
        if await cur.fetchone() is not None:
            self._ready.set()  # made ready while nobody listened: its NOTIFY went nowhere

    async def _receive(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            async for note in conn.notifies(timeout=HEALTH_EVERY):
                if note.payload in self._wanted:
                    self._ready.set()
            await conn.execute("SELECT 1")  # raises if the connection died silently

    async def _drop(self) -> None:
        self.listening = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await self._drop()
