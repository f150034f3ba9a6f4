"""What a dead letter costs: bytes per entry and the DLQ's read timings, per backend.

Fills an empty store with N dead jobs shaped like real ones (three error kinds, 50 users,
four tasks, every job dead after two attempts, each attempt with its error and a ~1 KB
stack, a remote id, a cost and a prompt as data), through the backend primitives a worker
uses (enqueue, fetch, move to DEAD with its entry), then measures:

* bytes per entry: Redis ``INFO memory`` ``used_memory`` delta; SQLite file size after a
  WAL checkpoint (minus the empty database); PostgreSQL ``pg_total_relation_size`` of the
  schema's tables, delta;
* get-by-id, a page (100 entries, newest first) for no filter, each single filter, user +
  kind and user + kind + task, ``dlq stats`` and an export (JSON lines of one user's
  entries): the median of ``--reps`` runs each.

Redis runs on a private ``redis-server`` started on a free port (never another Redis);
SQLite in a temporary directory; PostgreSQL in a fresh schema of the ``test`` database
at 127.0.0.1:5432, dropped at the end.

    python bench/dlq_size.py                       # all three, 100,000 entries
    python bench/dlq_size.py --backend redis --n 1000000 --json out.json

Run it with another checkout's code first on ``PYTHONPATH`` (``PYTHONPATH=../main/src``)
to compare before and after in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pg_size import schema_bytes  # bench/ is on the path when run as a script

import genqueue
from genqueue import App, ClassifiedError, DLQFilter, ErrorKind, JobRequest
from genqueue.backends.base import Move
from genqueue.entry import DeadLetter
from genqueue.job import Attempt, AttemptOutcome, JobState

QUEUE = "gen"
TASKS = ("pixel.generate", "pixel.animate", "pixel.inpaint", "pixel.rotate")
USERS = [f"user-{i:03d}" for i in range(50)]
KINDS = (
    (ErrorKind.SERVER, "httpx.HTTPStatusError", "Server error '503 Service Unavailable' for {n}"),
    (ErrorKind.RATE_LIMITED, "pixellab.RateLimited", "rate limited: retry after {n} s"),
    (ErrorKind.VALIDATION, "pixellab.InvalidRequest", "description too long ({n} chars)"),
)
BATCH = 500


def _stack(kind: int, variant: int) -> str:
    """A ~1 KB traceback: the same code path gives the same text (as in life)."""
    frames = [
        ("/srv/app/.venv/lib/python3.12/site-packages/genqueue/execution.py", 211, "run"),
        ("/srv/app/tasks/pixel.py", 88 + variant * 7, "generate"),
        (
            "/srv/app/.venv/lib/python3.12/site-packages/genqueue/providers/pixellab/client.py",
            142 + kind,
            "submit",
        ),
        ("/srv/app/.venv/lib/python3.12/site-packages/httpx/_client.py", 1574, "send"),
        (
            "/srv/app/.venv/lib/python3.12/site-packages/httpx/_models.py",
            761 + variant,
            "raise_for_status",
        ),
    ]
    lines = ["Traceback (most recent call last):"]
    for path, line, fn in frames:
        lines.append(f'  File "{path}", line {line}, in {fn}')
        lines.append(f"    response = await self._request(method, url, json=payload)  # {fn}")
    lines.append(f"{KINDS[kind][1]}: {KINDS[kind][2].format(n='N')}")
    return "\n".join(lines) + "\n"


STACKS = [[_stack(k, v) for v in range(2)] for k in range(len(KINDS))]


def _error(kind: int, n: int, variant: int) -> ClassifiedError:
    error_kind, error_type, message = KINDS[kind]
    return ClassifiedError(
        kind=error_kind,
        retryable=error_kind is not ErrorKind.VALIDATION,
        message=message.format(n=n),
        type=error_type,
        stack=STACKS[kind][variant],
        status=503 if error_kind is ErrorKind.SERVER else None,
    )


def _dead(job: Any, i: int, now: float, rng: random.Random, keep: float) -> Move:
    kind = i % len(KINDS)
    variant = rng.randrange(2)
    remote = f"pl_{rng.getrandbits(64):016x}"
    first = Attempt(
        job.attempts - 1,
        now - 40,
        now - 31,
        "worker-a1b2c3",
        AttemptOutcome.FAILED,
        error=_error(kind, rng.randrange(1000), variant),
        delay=30.0,
        details={"remote_job_id": remote, "cost": {"usd": 0.01}},
    )
    error = _error(kind, rng.randrange(1000), variant)
    last = Attempt(
        job.attempts,
        now - 9,
        now,
        "worker-a1b2c3",
        AttemptOutcome.DEAD,
        error=error,
        details={"remote_job_id": remote, "cost": {"usd": 0.01}},
    )
    dead = replace(
        job,
        state=JobState.DEAD,
        retry_count=1,
        history=[first, last],
        last_error=error,
        remote_job_id=remote,
        cost={"usd": 0.02},
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
    )
    reason = "retries exhausted (1 of 1 used)" if error.retryable else "not retryable"
    entry = DeadLetter(dead, reason, error.kind, now, error.fingerprint, now + keep)
    return Move(dead, JobState.ACTIVE, job.attempts, entry)


async def fill(app: App, n: int, seed: int = 7) -> list[str]:
    """N dead jobs, newest now, in batches like a busy worker: one second apart, or closer
    so that all of them are within the last five days (none expires while measured)."""
    rng = random.Random(seed)
    backend = app.backend
    step = min(1.0, 5 * 86400 / n)
    start = await backend.time() - n * step
    ids: list[str] = []
    began = time.monotonic()
    for at in range(0, n, BATCH):
        size = min(BATCH, n - at)
        requests = [
            JobRequest(
                task=TASKS[(at + i) // 3 % len(TASKS)],
                data={
                    "prompt": f"a knight with a red cape, side view, {rng.randrange(10**6)}",
                    "size": 64,
                    "seed": rng.getrandbits(31),
                },
                user_id=USERS[(at + i) * 7 % len(USERS)],
                queue=QUEUE,
                max_retries=1,
            )
            for i in range(size)
        ]
        await app.queue.enqueue_many(requests)
        claimed = await backend.fetch([QUEUE], "worker-a1b2c3", size, 300)
        claimed.sort(key=lambda j: j.created_at)
        moves = [
            _dead(job, at + i, start + (at + i) * step, rng, app.retention.dead_letters)
            for i, job in enumerate(claimed)
        ]
        assert all(await backend.move(moves)), "a move was refused"
        ids += [m.job.id for m in moves]
        if (at // BATCH) % 100 == 99:
            rate = (at + size) / (time.monotonic() - began)
            print(f"  {at + size:,} / {n:,} ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return ids


async def median_ms(fn: Callable[[], Awaitable[Any]], reps: int) -> float:
    await fn()  # warm caches and connections
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2)


async def timings(app: App, ids: list[str], reps: int) -> dict[str, float]:
    rng = random.Random(11)
    sample = rng.sample(ids, min(len(ids), 200))
    entry = await app.dlq.get(sample[0])
    user, kind, task, fp = entry.user_id, entry.error_kind, entry.task, entry.fingerprint
    picks = iter(sample * 10)

    async def get() -> None:
        await app.dlq.get(next(picks))

    filters = {
        "page: none": DLQFilter(),
        "page: user": DLQFilter(user_id=user),
        "page: kind": DLQFilter(error_kind=kind),
        "page: task": DLQFilter(task=task),
        "page: fingerprint": DLQFilter(fingerprint=fp),
        "page: queue": DLQFilter(queue=QUEUE),
        "page: user+kind": DLQFilter(user_id=user, error_kind=kind),
        "page: user+kind+task": DLQFilter(user_id=user, error_kind=kind, task=task),
        "page: kind+task": DLQFilter(error_kind=kind, task=task),
    }
    out = {"get by id (ms)": await median_ms(get, reps * 10)}
    for name, flt in filters.items():

        async def page(flt: DLQFilter = flt) -> None:
            found = await app.dlq.list(flt, limit=100)
            assert found.items, flt

        out[f"{name} (ms)"] = await median_ms(page, reps)
    out["stats (ms)"] = await median_ms(app.dlq.stats, max(3, reps // 2))

    async def export() -> None:
        await app.dlq.export(io.StringIO(), format="jsonl", filter=DLQFilter(user_id=user))

    out[f"export one user, {len(ids) // len(USERS):,} entries (ms)"] = await median_ms(export, 3)
    return out


# -- backends -------------------------------------------------------------------------------


class RedisRun:
    name = "redis"

    def __enter__(self) -> RedisRun:
        import redis

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.redis_server import RedisServer  # the tests' private server, no persistence

        self.dir = tempfile.mkdtemp(prefix="genqueue-dlqbench-")
        self.server = RedisServer(directory=Path(self.dir)).start()
        self.client = redis.Redis(host="127.0.0.1", port=self.server.port)
        self.url = self.server.url()
        return self

    def used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def breakdown(self, n: int) -> dict[str, float]:
        """Bytes per entry of each key of the queue (MEMORY USAGE, sampled)."""
        out = {}
        for key in sorted(self.client.scan_iter(match="*" + QUEUE + "*", count=1000)):
            size = self.client.memory_usage(key, samples=200) or 0
            if size > 1000:
                out[key.decode()] = round(size / n, 1)
        return out

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SqliteRun:
    name = "sqlite"

    def __enter__(self) -> SqliteRun:
        self.dir = tempfile.mkdtemp(prefix="genqueue-dlqbench-")
        self.path = Path(self.dir) / "dlq.db"
        self.url = f"sqlite:///{self.path}"
        return self

    def used(self) -> int:
        import sqlite3

        if not self.path.exists():
            return 0
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return self.path.stat().st_size

    def breakdown(self, n: int) -> dict[str, float]:
        import sqlite3

        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            return {}
        finally:
            conn.close()
        return {name: round(size / n, 1) for name, size in rows if size > 100_000}

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresRun:
    name = "postgres"
    dsn = os.environ.get("GENQUEUE_BENCH_PG", "postgresql://127.0.0.1:5432/test")

    def __enter__(self) -> PostgresRun:
        import psycopg

        self.schema = f"dlqbench{os.getpid()}"
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.url = f"{self.dsn}?schema={self.schema}"
        return self

    def used(self) -> int:
        return schema_bytes(self.conn, self.schema)

    def breakdown(self, n: int) -> dict[str, float]:
        rows = self.conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (self.schema,),
        ).fetchall()
        return {name: round(size / n, 1) for name, size in rows if size > 100_000}

    def __exit__(self, *exc: object) -> None:
        self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.conn.close()


async def _never_runs(ctx: Any) -> None:
    raise AssertionError("the benchmark's jobs are never run")


RUNS = {"redis": RedisRun, "sqlite": SqliteRun, "postgres": PostgresRun}


async def measure(kind: str, n: int, reps: int) -> dict[str, Any]:
    with RUNS[kind]() as run:
        app = App(run.url)
        for task in TASKS:
            app.task(task, queue=QUEUE)(_never_runs)
        await app.open()
        try:
            if kind == "postgres":
                await app.backend.time()
            before = run.used()
            began = time.monotonic()
            ids = await fill(app, n)
            fill_s = time.monotonic() - began
            await app.dlq.expire()  # what retention runs often (PostgreSQL folds counters)
            if kind == "postgres":
                run.conn.execute(f'VACUUM ANALYZE "{run.schema}".jobs')
                run.conn.execute(f'VACUUM ANALYZE "{run.schema}".dead_letters')
            after = run.used()
            result: dict[str, Any] = {
                "backend": kind,
                "n": n,
                "bytes per entry": round((after - before) / n),
                "fill (s)": round(fill_s, 1),
            }
            result.update(await timings(app, ids, reps))
            result["breakdown (bytes per entry)"] = run.breakdown(n)
            return result
        finally:
            await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="all", help="redis, sqlite, postgres or all")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    kinds = list(RUNS) if args.backend == "all" else args.backend.split(",")
    load = os.getloadavg()
    print(f"genqueue from {Path(genqueue.__file__).parent}", file=sys.stderr)
    results = []
    for kind in kinds:
        print(f"{kind}: filling {args.n:,} dead jobs", file=sys.stderr, flush=True)
        result = asyncio.run(measure(kind, args.n, args.reps))
        result["load average"] = [round(x, 2) for x in load]
        results.append(result)
        print(json.dumps(result, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
