"""Talking to PostgreSQL: the connection pool, retries across outages, the server clock.

Connections come from a psycopg-pool pool in autocommit mode: a single statement is its
own transaction (one round trip), and operations that need several statements open an
explicit transaction. A call that fails because the server is unreachable, restarting or
refusing connections, or because PostgreSQL chose it as a deadlock victim or a
serialization failure, is retried with backoff for up to ``retry_for`` seconds (so
workers ride out a restart and resume by themselves), then fails with ``BackendError``.
A broken connection is discarded by the pool and the retry takes another.

Re-running a call whose reply was lost is safe for the same reasons as on Redis: moves and
heartbeats are fenced compare-and-sets, enqueue recognises its own already stored jobs,
and a fetch whose reply was lost only leaves leases that expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from genqueue.backends.postgres.options import PostgresOptions, safe_url
from genqueue.backends.remote import Outages, ServerClock
from genqueue.errors import BackendError

log = logging.getLogger("genqueue.postgres")
# psycopg-pool logs each failed connection attempt as a warning; like genqueue's own
# loggers, an app that has not configured logging gets nothing on stderr from it (a
# failure that matters reaches the caller as a BackendError).
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]

#: SQLSTATE classes and codes worth retrying: connection exceptions (08), the server
#: shutting down or starting (57P01-57P03), deadlock victims and serialization failures.
_RETRY_CLASSES = ("08",)
_RETRY_CODES = frozenset(("57P01", "57P02", "57P03", "40001", "40P01", "53300"))


def transient(exc: BaseException) -> bool:
    """True if trying again later may succeed."""
    if isinstance(exc, PoolTimeout | OSError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    code = exc.sqlstate
    # No SQLSTATE: the client lost the connection (or never made it).
    return code is None or code.startswith(_RETRY_CLASSES) or code in _RETRY_CODES


def _retryable(exc: Exception) -> Exception:
    if not transient(exc):
        raise exc
    return exc


class Database:
    """One pool with retries and clock tracking."""

    def __init__(self, options: PostgresOptions, where: str | None = None) -> None:
        self.options = options
        #: The server, for messages (no password).
        self.where = where or safe_url(options.conninfo)
        self.clock = ServerClock()
        self._outages = Outages("PostgreSQL", f"PostgreSQL at {self.where}", options.retry_for, log)
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            options.conninfo,
            min_size=options.pool_min,
            max_size=options.pool_max,
            kwargs={"autocommit": True},
            open=False,
            timeout=options.pool_timeout,
            name="genqueue",
        )

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=self.options.pool_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await self.pool.close()
            why = await self._why_not(exc)
            raise BackendError(f"cannot connect to PostgreSQL at {self.where}: {why}") from exc

    async def _why_not(self, exc: Exception) -> str:
        """What the server (or the network) said, rather than the pool's "incomplete"."""
        if not isinstance(exc, PoolTimeout):
            return str(exc)
        try:
            conn = await psycopg.AsyncConnection.connect(self.options.conninfo)
        except psycopg.Error as error:
            return " ".join(str(error).split())
        await conn.close()
        return f"no connection within pool_timeout={self.options.pool_timeout} s"

    async def close(self) -> None:
        await self.pool.close()

    async def run(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` on a pooled connection (autocommit), retried across outages."""
        return await self._retrying(what, fn, transaction=False)

    async def transaction(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` inside one transaction, retried (from the start) across outages."""
        return await self._retrying(what, fn, transaction=True)

    async def _retrying(
        self, what: str, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool
    ) -> T:
        async def attempt() -> T:
            async with self.pool.connection() as conn:
                if not transaction:
                    return await fn(conn)
                async with conn.transaction():
                    return await fn(conn)

        return await self._outages.call(what, attempt, _retryable)

    async def server_time(self) -> float:
        """Ask the server for its time, and remember the offset to this machine's."""

        async def ask(conn: Conn) -> float:
            sent = time.monotonic()
            cur = await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
            row = await cur.fetchone()
            assert row is not None
            now = float(row[0])
            self.clock.observe(now, sent, time.monotonic())
            return now

        return await self.run("clock_timestamp", ask)


async def fetch_all(conn: Conn, query: str, params: Any = None) -> list[TupleRow]:
    """Rows of one statement, as tuples whatever the connection's row factory."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []


async def fetch_one(conn: Conn, query: str, params: Any = None) -> TupleRow | None:
    rows = await fetch_all(conn, query, params)
    return rows[0] if rows else None


async def execute(conn: Conn, query: str, params: Any = None) -> int:
    """Run one statement; its row count."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return cur.rowcount
