"""The PostgreSQL backend: jobs are rows, every state change is one SQL transaction.

A fetch claims a batch with one ``UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP
LOCKED)``: concurrent workers skip each other's rows instead of waiting, and never claim a
job twice. A batch of outcomes is one transaction (each move a fenced compare-and-set
that writes or removes the job's DLQ entry in the same statement). Due times, leases and
retention follow the PostgreSQL server's clock (``statement_timestamp()`` inside the
statements); ``time()`` returns an estimate of it. A ``FakeClock`` given by tests stands
in for the server clock so they can move time (its time is passed to every statement);
any other clock is ignored, as on Redis.

``enqueue_in_transaction`` stores jobs through the caller's own connection, inside the
caller's transaction: the jobs exist if and only if that transaction commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
import psycopg
from psycopg import errors as pgerrors

from genqueue.backends.base import (
    Backend,
    Capabilities,
    JobQuery,
    Lease,
    Move,
    RunningUpdate,
    check_same_data,
)
from genqueue.backends.postgres import counted, dlq, moving, schema, state
from genqueue.backends.postgres.connection import (
    Conn,
    Database,
    execute,
    fetch_all,
    fetch_one,
)
from genqueue.backends.postgres.options import PostgresOptions, safe_url
from genqueue.backends.postgres.queries import Queries, list_jobs_sql
from genqueue.backends.postgres.wake import Listener
from genqueue.backends.sqlite.rows import (
    JOB_COLUMNS,
    job_values,
    row_to_job,
)
from genqueue.clock import Clock, FakeClock
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, Page, decode_cursor, encode_cursor
from genqueue.errors import BackendError, ConfigError, InvalidInput
from genqueue.job import Job

#: Most jobs one fetch claims; a worker asks again.
FETCH_MAX = 1000
#: Due scheduled/retrying jobs of other queues promoted by one fetch.
PROMOTE_PER_FETCH = 200
#: Ask the server for its time when the estimate is older than this (seconds).
CLOCK_MAX_AGE = 30.0
_RUN_AT = JOB_COLUMNS.index("run_at")


class PostgresBackend(Backend):
    def __init__(
        self,
        options: PostgresOptions | str,
        *,
        clock: Clock | None = None,
        url: str | None = None,
    ) -> None:
        if isinstance(options, str):
            url = url or options
            options = PostgresOptions.from_url(options)
        self.options = options
        self.url = url or options.conninfo
        # Only a test clock replaces the server's: a skewed machine clock must not matter.
        self.test_clock = clock if isinstance(clock, FakeClock) else None
        self.capabilities = Capabilities(shared=True, server_time=self.test_clock is None)
        self.schema = options.schema
        self.q = Queries(options.schema)
        self.dq = dlq.DLQQueries(self.q.s)
        self.cq = counted.CountQueries(self.q.s)
        self.sq = state.StateQueries(self.q.s)
        self._db: Database | None = None
        self.listener = Listener(options.conninfo, options.schema, self.q.any_ready)
        self._checked = False

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> PostgresBackend:
        return cls(PostgresOptions.from_url(url), clock=clock, url=url)

    def __repr__(self) -> str:
        return f"<PostgresBackend {safe_url(self.url)} schema={self.schema}>"

    # -- plumbing -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is not None:
            return
        db = Database(self.options, safe_url(self.url))
        await db.open()
        try:
            await db.run("migrate", lambda conn: schema.migrate(conn, self.schema))
            await db.server_time()
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        await self.listener.close()
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        self._checked = False

    @property
    def db(self) -> Database:
        if self._db is None:
            raise BackendError(
                "the PostgreSQL backend is not open (use `async with app:` or app.open())"
            )
        return self._db

    async def check_integrity(self) -> None:
        """Check that every migration is recorded and every table exists (cheap: no table
        is read); raise ``StorageCorrupt`` otherwise. PostgreSQL checks its own pages."""
        if not self._checked:
            await self.db.run("check", lambda conn: schema.check(conn, self.schema))
            self._checked = True

    def _now(self) -> float | None:
        """The instant statements use: the test clock's, or None for the server's."""
        return self.test_clock.now() if self.test_clock is not None else None

    async def time(self) -> float:
        if self.test_clock is not None:
            return self.test_clock.now()
        db = self.db
        estimate = db.clock.now()
        if estimate is None or db.clock.stale(CLOCK_MAX_AGE):
            return await db.server_time()
        return estimate

    # -- producers ----------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        rows = [job_values(job) for job in jobs]  # all encode before anything is written
        attempts = 0

        async def store(conn: Conn) -> list[Job]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # A retry after a lost connection: the first try may have committed.
                stored = await self._already_stored(conn, jobs)
                if stored is not None:
                    return stored
            return await self._enqueue(conn, jobs, rows)

        if len(jobs) == 1:
            # One statement is atomic by itself (autocommit): one round trip, no BEGIN.
            return await self.db.run("enqueue", store)
        return await self.db.transaction("enqueue", store)

    async def enqueue_in_transaction(self, jobs: Sequence[Job], connection: Any) -> list[Job]:
        """Store ``jobs`` through ``connection`` (a psycopg ``AsyncConnection`` to the same
        database), inside the transaction it is in: they exist once it commits, and never
        if it rolls back. Nothing is committed here; a failure (an idempotency conflict)
        rolls back only what this call wrote (a savepoint), not the caller's work."""
        if not isinstance(connection, psycopg.AsyncConnection):
            raise ConfigError(
                "connection= must be a psycopg AsyncConnection (psycopg 3, async) to the "
                f"database of {safe_url(self.url)}; got {type(connection).__name__}"
            )
        if connection.closed:
            raise ConfigError("connection= is closed")
        rows = [job_values(job) for job in jobs]
        async with connection.transaction():
            return await self._enqueue(connection, jobs, rows)

    async def _enqueue(
        self, conn: Conn, jobs: Sequence[Job], rows: list[tuple[Any, ...]]
    ) -> list[Job]:
        try:
            if not any(job.idempotency_key for job in jobs):
                async with conn.cursor() as cur:
                    await cur.executemany(self.q.insert_job, rows)
                return list(jobs)
            return [
                await self._enqueue_one(conn, job, row) for job, row in zip(jobs, rows, strict=True)
            ]
        except pgerrors.UniqueViolation as exc:
            raise InvalidInput(
                f"a job with one of these ids already exists: {exc}", field="id"
            ) from exc
        except psycopg.DataError as exc:
            raise InvalidInput(f"PostgreSQL cannot store this job: {exc}") from exc

    async def _enqueue_one(self, conn: Conn, job: Job, row: tuple[Any, ...]) -> Job:
        if not job.idempotency_key:
            await execute(conn, self.q.insert_job, row)
            return job
        if await fetch_one(conn, self.q.insert_keyed, row) is not None:
            return job
        found = await fetch_one(conn, self.q.pending_by_key, (job.queue, job.idempotency_key))
        if found is None:  # the holder ended between the two statements: try once more
            if await fetch_one(conn, self.q.insert_keyed, row) is not None:
                return job
            found = await fetch_one(conn, self.q.pending_by_key, (job.queue, job.idempotency_key))
            if found is None:
                raise BackendError("the idempotency key's holder keeps changing; try again")
        # A conflict raises here and the transaction rolls the batch back.
        return check_same_data(job, row_to_job(found))

    async def _already_stored(self, conn: Conn, jobs: Sequence[Job]) -> list[Job] | None:
        found = {
            str(r[0]): r
            for r in await fetch_all(conn, self.q.jobs_by_ids, ([job.id for job in jobs],))
        }
        if len(found) < len({job.id for job in jobs}):
            return None
        return [row_to_job(found[job.id]) for job in jobs]

    async def get(self, job_id: str) -> Job | None:
        row = await self.db.run("get", lambda conn: fetch_one(conn, self.q.job_by_id, (job_id,)))
        return row_to_job(row) if row else None

    async def list_jobs(self, query: JobQuery) -> Page[Job]:
        sql, params = list_jobs_sql(self.q.s, query, decode_cursor(query.cursor))
        rows = await self.db.run("list_jobs", lambda conn: fetch_all(conn, sql, params))
        jobs = [row_to_job(r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return Page(
            jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id) if more and jobs else None
        )

    async def job_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        # A range on the unique index of ids (bytewise); ids are lowercase hex.
        params = (prefix, prefix + "g", limit)
        rows = await self.db.run(
            "ids", lambda conn: fetch_all(conn, self.q.ids_with_prefix, params)
        )
        return [str(row[0]) for row in rows]

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self.db.run("counts", lambda conn: fetch_all(conn, self.q.counts))
        out: dict[str, dict[str, int]] = {}
        for queue, state_name, n in rows:
            out.setdefault(str(queue), {})[str(state_name)] = int(n)
        return out

    async def oldest_ready(self) -> dict[str, float]:
        rows = await self.db.run("oldest", lambda conn: fetch_all(conn, self.q.oldest_ready))
        return {str(queue): float(run_at) for queue, run_at in rows}

    # -- workers ------------------------------------------------------------------------

    async def fetch(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_seconds: float
    ) -> list[Job]:
        if limit <= 0 or not queues:
            return []
        params = {
            "queues": list(dict.fromkeys(queues)),
            "limit": min(limit, FETCH_MAX),
            "promote": PROMOTE_PER_FETCH,
            "worker": worker_id,
            "lease": float(lease_seconds),
            "now": self._now(),
        }
        rows = await self.db.run("fetch", lambda conn: fetch_all(conn, self.q.fetch, params))
        claimed = sorted(rows, key=lambda r: (r[_RUN_AT], r[-1]))  # oldest due first
        return [row_to_job(r[:-1]) for r in claimed]

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        await self.listener.wait(queues, timeout)

    async def heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> list[str]:
        if not leases:
            return []
        params = {
            "ids": [lease.job_id for lease in leases],
            "tokens": [lease.token for lease in leases],
            "lease": float(lease_seconds),
            "now": self._now(),
        }
        # One statement (locks, then extends): atomic in autocommit, no BEGIN/COMMIT.
        rows = await self.db.run(
            "heartbeat", lambda conn: fetch_all(conn, self.q.heartbeat, params)
        )
        live = {str(r[0]) for r in rows}
        return [lease.job_id for lease in leases if lease.job_id not in live]

    async def update_running(self, lease: Lease, update: RunningUpdate) -> bool:
        params = {
            "progress": orjson.dumps(update.progress.to_record()).decode()
            if update.progress
            else None,
            "remote_job_id": update.remote_job_id,
            "meta": orjson.dumps(update.meta).decode() if update.meta else None,
            "cost": orjson.dumps(update.cost).decode() if update.cost is not None else None,
            "id": lease.job_id,
            "token": lease.token,
            "now": self._now(),
        }
        count = await self.db.run(
            "update_running", lambda conn: execute(conn, self.q.update_running, params)
        )
        return count == 1

    async def move(self, moves: Sequence[Move]) -> list[bool]:
        return await moving.move(self.db, self.q, moves, self._now())

    async def expired(self, limit: int) -> list[Job]:
        params = {"limit": limit, "now": self._now()}
        rows = await self.db.run("expired", lambda conn: fetch_all(conn, self.q.expired, params))
        return [row_to_job(r) for r in rows]

    async def promote(self, limit: int) -> int:
        params = {"limit": limit, "now": self._now()}
        return await self.db.run("promote", lambda conn: execute(conn, self.q.promote, params))

    async def purge_finished(
        self, now: float, finished_before: float, limit: int, keep: int | None = None
    ) -> int:
        """Expired finished jobs, then each queue's first to expire beyond ``keep`` (each
        delete one statement: a purge is bounded work, not one transaction)."""

        async def purge(conn: Conn) -> int:
            removed = await execute(conn, self.q.purge_expired, (now, limit))
            if removed < limit:
                removed += await execute(
                    conn, self.q.purge_unexpiring, (finished_before, limit - removed)
                )
            if keep is None:
                return removed
            for (queue,) in await fetch_all(conn, self.q.queues_with_finished):
                if removed >= limit:
                    break
                rows = await fetch_all(conn, self.q.finished_of_queue_up_to, (queue, keep + limit))
                excess = min(int(rows[0][0]) - keep, limit - removed)
                if excess > 0:
                    removed += await execute(conn, self.q.purge_oldest_of_queue, (queue, excess))
            return removed

        return await self.db.run("purge_finished", purge)

    # -- dead letter queue ----------------------------------------------------------------

    async def dlq_get(self, job_id: str) -> DeadLetter | None:
        return await self.db.run("dlq_get", lambda conn: dlq.get(conn, self.dq, job_id))

    async def dlq_list(self, filter: DLQFilter, cursor: str | None, limit: int) -> Page[DeadLetter]:
        clause, params = dlq.where(filter, decode_cursor(cursor))
        found = await self.db.run(
            "dlq_list", lambda conn: dlq.entries(conn, self.dq, clause, params, limit + 1)
        )
        entries = found[:limit]
        last = entries[-1] if entries else None
        more = len(found) > limit
        return Page(entries, encode_cursor(last.failed_at, last.job_id) if more and last else None)

    async def dlq_count(self, filter: DLQFilter) -> int:
        clause, params = dlq.where(filter, None)
        return await self.db.run("dlq_count", lambda conn: dlq.count(conn, self.dq, clause, params))

    async def dlq_stats(self, filter: DLQFilter, top: int = 10) -> DLQStats:
        if replace(filter, queue=None).is_empty:  # the counters answer
            return await self.db.run(
                "dlq_stats", lambda conn: counted.stats(conn, self.cq, filter.queue, top)
            )
        clause, params = dlq.where(filter, None)
        return await self.db.run(
            "dlq_stats", lambda conn: dlq.stats(conn, self.dq, clause, params, top)
        )

    async def dlq_delete(self, job_ids: Sequence[str]) -> list[str]:
        if not job_ids:
            return []
        return await self.db.run("dlq_delete", lambda conn: dlq.delete(conn, self.dq, job_ids))

    async def dlq_expire(self, limit: int) -> list[str]:
        now = self._now()
        expired = await self.db.run(
            "dlq_expire", lambda conn: dlq.expire(conn, self.dq, now, limit)
        )
        # Retention runs often: fold the counters' pending changes while they are few.
        await self.db.run("dlq_rollup", lambda conn: fetch_all(conn, self.cq.rollup, ()))
        return expired

    # -- shared state -----------------------------------------------------------------------

    async def state_get(self, key: str) -> tuple[Any, int] | None:
        now = self._now()
        return await self.db.run("state_get", lambda conn: state.get(conn, self.sq, key, now))

    async def state_put(
        self, key: str, value: Any, *, expect_version: int, ttl: float | None = None
    ) -> int | None:
        now = self._now()
        return await self.db.run(
            "state_put",
            lambda conn: state.put(
                conn, self.sq, key, value, expect_version=expect_version, ttl=ttl, now=now
            ),
        )

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        now = self._now()
        return await self.db.transaction(
            "slot_acquire",
            lambda conn: state.acquire(conn, self.sq, key, holder, limit=limit, ttl=ttl, now=now),
        )

    async def slot_release(self, key: str, holder: str) -> None:
        await self.db.run("slot_release", lambda conn: state.release(conn, self.sq, key, holder))

    async def slot_count(self, key: str) -> int:
        now = self._now()
        return await self.db.run("slot_count", lambda conn: state.count(conn, self.sq, key, now))

    async def slot_holders(self, key: str) -> list[str]:
        now = self._now()
        return await self.db.run(
            "slot_holders", lambda conn: state.holders(conn, self.sq, key, now)
        )

    async def tally_add(self, bucket: int, counts: Mapping[str, float], keep: float) -> None:
        oldest = bucket - int(keep // 60) - 1
        await self.db.transaction(
            "tally_add", lambda conn: state.tally_add(conn, self.sq, bucket, counts, oldest)
        )

    async def tally_read(self, first: int, last: int) -> dict[str, float]:
        return await self.db.run(
            "tally_read", lambda conn: state.tally_read(conn, self.sq, first, last)
        )

    async def tally_buckets(self, first: int, last: int) -> dict[int, dict[str, float]]:
        return await self.db.run(
            "tally_buckets", lambda conn: state.tally_buckets(conn, self.sq, first, last)
        )
