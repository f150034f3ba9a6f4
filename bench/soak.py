"""Soak: a million jobs through genqueue on Redis, PostgreSQL and SQLite (issue 12).

For each backend, on a private store (its own ``redis-server`` on a free port with
nothing persisted; a fresh schema on the machine's PostgreSQL, ``BENCH_POSTGRES_URL`` or
``postgresql://postgres@127.0.0.1:5432/test``; a fresh SQLite file in a temp dir):

1. **Enqueue** the first ``--backlog`` (100,000) no-op jobs from this process with
   ``enqueue_many``, 1,000 per call, spread over ``--queues`` queues; the store's size is
   read before and after (bytes per queued job) and the rate is the bulk enqueue rate.
2. **Run** ``--workers`` worker processes (``Worker``, concurrency ``--concurrency``,
   default settings otherwise: finished jobs are kept 24 h capped at 10,000 per queue,
   enforced by the workers' sweeper every 60 s) while a producer process enqueues the
   rest of the ``--jobs`` (1,000,000), 1,000 per call, pausing whenever more than
   ``--backlog`` are pending: a million jobs pass through a store that never holds more
   than a backlog of them. Every ``--sample`` seconds the driver reads how many jobs are
   pending (``Backend.counts``) and how many the producer has enqueued, the store's size
   and each worker's RSS (psutil), and prints a line; the table of those samples is the
   throughput and the store's size over time.
3. **Report**: bulk enqueue rate, throughput (whole run and per sample), worker RSS when
   2 % of the jobs were done (warm) and at the end with the worst growth in %, store size
   empty, with the first backlog (per job), at its peak during the run, at the end, and
   after one more sweep (the finished-job cap).

The store's size: Redis ``used_memory``; PostgreSQL ``pg_total_relation_size`` summed
over the schema's tables; SQLite the database file plus its WAL. genqueue's PostgreSQL
tables rely on autovacuum (on by default) to reuse the space of deleted and updated
rows; where a server has it off, the driver runs ``VACUUM`` on the schema's tables at
each sample instead, and the report says so.

    .venv/bin/python bench/soak.py [--backend redis,postgres,sqlite] [--jobs 1000000]
        [--workers 4] [--concurrency 50] [--queues 1] [--backlog 100000] [--sample 5]
        [--out FILE.json]

Results go to stdout as Markdown and, with ``--out``, as JSON. Not a test: it takes
minutes per backend (see bench/README.md for figures and settings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pg_size import schema_bytes  # bench/ is on the path when run as a script

BATCH = 1000
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
WARM_SHARE = 0.02


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- stores ------------------------------------------------------------------------------------


class Store:
    """A private backend store: its URL, its size, and how to remove it."""

    name = ""
    url = ""

    def size(self) -> int:
        raise NotImplementedError

    def autovacuum(self) -> bool:
        return True

    def vacuum(self) -> None:
        pass

    def close(self) -> None:
        pass


class RedisStore(Store):
    name = "redis"

    def __init__(self, workdir: Path) -> None:
        import redis

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.redis_server import RedisServer  # the tests' private server, no persistence

        self.server = RedisServer(directory=workdir).start()
        self.url = self.server.url()
        self.client = redis.Redis(host="127.0.0.1", port=self.server.port)

    def size(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def close(self) -> None:
        self.server.close()


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        import psycopg

        self.server = os.environ.get("BENCH_POSTGRES_URL", POSTGRES_DEFAULT)
        self.schema = f"genqueue_soak_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in self.server else "?"
        self.url = f"{self.server}{sep}schema={self.schema}"
        self._connect = lambda: psycopg.connect(self.server, autocommit=True)

    def autovacuum(self) -> bool:
        with self._connect() as conn:
            row = conn.execute("SHOW autovacuum").fetchone()
        return bool(row and row[0] == "on")

    def vacuum(self) -> None:
        """What autovacuum would do: dead rows of the schema's tables made reusable."""
        with self._connect() as conn:
            for (table,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)
            ).fetchall():
                conn.execute(f'VACUUM "{self.schema}"."{table}"')

    def size(self) -> int:
        with self._connect() as conn:
            return schema_bytes(conn, self.schema)

    def close(self) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "soak.db"
        self.url = f"sqlite:///{self.path}"

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total


STORES: dict[str, type[Store]] = {
    "redis": RedisStore,
    "postgres": PostgresStore,
    "sqlite": SqliteStore,
}


# -- the app and its workers -----------------------------------------------------------------


def queue_names(count: int) -> list[str]:
    return ["soak"] if count == 1 else [f"soak-{i:03d}" for i in range(count)]


def make_app(url: str) -> Any:
    import genqueue

    app = genqueue.App(url)

    @app.task("noop", queue="soak")
    async def noop(ctx: genqueue.JobContext) -> None:
        return None

    return app


def run_worker(url: str, queues: list[str], concurrency: int) -> None:
    """A worker process: runs until SIGTERM."""
    from genqueue import Worker, WorkerSettings

    app = make_app(url)
    worker = Worker(
        app, queues=queues, settings=WorkerSettings(concurrency=concurrency), handle_signals=True
    )

    async def main() -> None:
        try:
            await worker.run()
        finally:
            await app.close()

    asyncio.run(main())


async def enqueue_range(
    url: str,
    first: int,
    end: int,
    queues: list[str],
    backlog: int | None = None,
    count_file: Path | None = None,
) -> float:
    """Enqueue jobs ``first`` .. ``end - 1``; with ``backlog``, wait whenever more than
    that many are pending. Returns the seconds it took."""
    from genqueue import JobRequest

    app = make_app(url)
    started = time.perf_counter()
    async with app:
        for start in range(first, end, BATCH):
            count = min(BATCH, end - start)
            requests = [
                JobRequest("noop", {"i": i}, queue=queues[i % len(queues)])
                for i in range(start, start + count)
            ]
            await app.queue.enqueue_many(requests)
            if count_file is not None:  # atomically: the driver reads it meanwhile
                count_file.with_suffix(".tmp").write_text(str(start + count))
                count_file.with_suffix(".tmp").replace(count_file)
            if backlog is not None and (start // BATCH) % 10 == 9:
                while await pending_of(app) > backlog:
                    await asyncio.sleep(0.2)
            if backlog is None and (start // BATCH) % 100 == 99:
                rate = (start + count - first) / (time.perf_counter() - started)
                log(f"  enqueued {start + count:,} ({rate:,.0f}/s)")
    return time.perf_counter() - started


async def pending_of(app: Any) -> int:
    counts = await app.backend.counts()
    states = ("queued", "scheduled", "active", "retrying")
    return sum(n for queue in counts.values() for s, n in queue.items() if s in states)


async def pending(url: str) -> int:
    """Jobs not yet finished (queued, scheduled, active, retrying)."""
    app = make_app(url)
    async with app:
        return await pending_of(app)


async def final_sweep(url: str) -> int:
    from genqueue.maintenance import sweep

    app = make_app(url)
    async with app:
        return await sweep(app)


# -- one backend -------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    done: int
    rate: float
    store: int
    rss: list[int]


@dataclass
class Result:
    backend: str
    jobs: int
    enqueue_s: float = 0.0
    drain_s: float = 0.0
    store_empty: int = 0
    store_enqueued: int = 0
    store_peak: int = 0
    store_drained: int = 0
    store_swept: int = 0
    enqueued: int = 0
    vacuumed_by_driver: bool = False
    rss_start: list[int] = field(default_factory=list)
    rss_warm: list[int] = field(default_factory=list)
    rss_end: list[int] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def worker_rss(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    sizes = []
    for proc in procs:
        try:
            sizes.append(psutil.Process(proc.pid).memory_info().rss)
        except psutil.NoSuchProcess:
            sizes.append(0)
    return sizes


def spawn(argv: list[str], logfile: Path) -> subprocess.Popen[bytes]:
    out = open(logfile, "ab")  # noqa: SIM115 - lives as long as the process
    script = str(Path(__file__).resolve())
    return subprocess.Popen(
        [sys.executable, script, *argv], stdout=out, stderr=out, cwd=logfile.parent
    )


def start_workers(options: argparse.Namespace, url: str, workdir: Path) -> list[Any]:
    argv = ["--worker", url, "--queues", str(options.queues)]
    argv += ["--concurrency", str(options.concurrency)]
    return [spawn(argv, workdir / f"worker-{i}.log") for i in range(options.workers)]


def start_producer(options: argparse.Namespace, url: str, workdir: Path) -> Any:
    argv = ["--producer", url, "--queues", str(options.queues), "--jobs", str(options.jobs)]
    argv += ["--first", str(options.backlog), "--backlog", str(options.backlog)]
    return spawn(argv, workdir / "producer.log")


def stop(procs: list[Any]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def drain(options: argparse.Namespace, store: Store, workdir: Path, result: Result) -> None:
    """Workers run while the producer adds the rest, keeping the backlog bounded; sample
    until every job is done."""
    url, first = store.url, min(options.backlog, options.jobs)
    procs = start_workers(options, url, workdir)
    producer = start_producer(options, url, workdir)
    started = time.perf_counter()
    last_t, last_done = 0.0, 0
    try:
        time.sleep(1.0)
        result.rss_start = worker_rss(procs)
        while True:
            time.sleep(options.sample)
            for proc in [*procs, producer]:
                if proc.poll() not in (None, 0):
                    raise RuntimeError(f"a process exited with code {proc.returncode}: {workdir}")
            produced = options.jobs if producer.poll() == 0 else read_count(workdir, first)
            left = asyncio.run(pending(url))
            if options.vacuum_in_driver:
                store.vacuum()
            t, done = time.perf_counter() - started, produced - left
            rate = (done - last_done) / (t - last_t)
            sample = Sample(t, done, rate, store.size(), worker_rss(procs))
            result.samples.append(sample)
            result.store_peak = max(result.store_peak, sample.store)
            if not result.rss_warm and done >= WARM_SHARE * options.jobs:
                result.rss_warm = sample.rss
            log(
                f"  {t:6.0f} s  done {done:>9,}  {sample.rate:>7,.0f} jobs/s  "
                f"store {sample.store / 2**20:8.1f} MiB  "
                f"RSS {'/'.join(f'{r / 2**20:.0f}' for r in sample.rss)} MiB"
            )
            last_t, last_done = t, done
            if done >= options.jobs:
                break
        result.drain_s = time.perf_counter() - started
        result.rss_end = worker_rss(procs)
        result.store_drained = store.size()
    finally:
        stop([*procs, producer])


COUNT_FILE = "produced"


def read_count(workdir: Path, first: int) -> int:
    """How many jobs are enqueued: ``first`` until the producer has written its count."""
    try:
        return int((workdir / COUNT_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return first


def run_producer(options: argparse.Namespace) -> None:
    """The producer process: enqueues jobs ``--first`` .. ``--jobs``, never more than
    ``--backlog`` pending, writing how many it enqueued to ``produced`` in its cwd."""
    asyncio.run(
        enqueue_range(
            options.producer,
            options.first,
            options.jobs,
            queue_names(options.queues),
            options.backlog,
            Path(COUNT_FILE),
        )
    )


def run_backend(options: argparse.Namespace, name: str) -> Result:
    result = Result(name, options.jobs)
    with tempfile.TemporaryDirectory(prefix=f"genqueue-soak-{name}-") as tmp:
        workdir = Path(tmp)
        store = STORES[name](workdir)
        try:
            asyncio.run(pending(store.url))  # creates the schema
            options.vacuum_in_driver = not store.autovacuum()
            result.vacuumed_by_driver = options.vacuum_in_driver
            if options.vacuum_in_driver:
                log(f"{name}: autovacuum is off on this server: the driver VACUUMs each sample")
            result.store_empty = store.size()
            first = min(options.backlog, options.jobs)
            log(f"{name}: enqueue {first:,} jobs on {options.queues} queue(s)")
            queues = queue_names(options.queues)
            result.enqueue_s = asyncio.run(enqueue_range(store.url, 0, first, queues))
            result.enqueued = first
            result.store_enqueued = store.size()
            log(
                f"{name}: drain with {options.workers} workers x {options.concurrency}, "
                f"the producer adding the rest ({options.backlog:,} pending at most)"
            )
            drain(options, store, workdir, result)
            asyncio.run(final_sweep(store.url))
            result.store_swept = store.size()
        finally:
            store.close()
    return result


# -- report ------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def growth(start: list[int], end: list[int]) -> str:
    if not start or not end:
        return "?"
    worst = max((e - s) / s * 100 for s, e in zip(start, end, strict=True) if s)
    return f"{worst:+.1f} %"


def report(results: list[Result], options: argparse.Namespace) -> str:
    lines = [
        f"# Soak: {options.jobs:,} no-op jobs, {options.workers} worker processes x "
        f"{options.concurrency}, {options.queues} queue(s), at most {options.backlog:,} pending",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average at the end "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        "| backend | bulk enqueue jobs/s | run jobs/s | min / median / max per sample | "
        "worker RSS warm -> end (worst growth) | store empty / with backlog (per job) | "
        "store peak in run / at end / after sweep |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rates = [s.rate for s in r.samples[1:-1]] or [s.rate for s in r.samples]
        per_job = (r.store_enqueued - r.store_empty) / r.enqueued
        warm = r.rss_warm or r.rss_start
        lines.append(
            f"| {r.backend} | {r.enqueued / r.enqueue_s:,.0f} | {r.jobs / r.drain_s:,.0f} | "
            f"{min(rates):,.0f} / {statistics.median(rates):,.0f} / {max(rates):,.0f} | "
            f"{'/'.join(f'{x / 2**20:.0f}' for x in warm)} -> "
            f"{'/'.join(f'{x / 2**20:.0f}' for x in r.rss_end)} MiB ({growth(warm, r.rss_end)}) | "
            f"{mib(r.store_empty)} / {mib(r.store_enqueued)} ({per_job:,.0f} B) | "
            f"{mib(r.store_peak)} / {mib(r.store_drained)} / {mib(r.store_swept)} |"
        )
    for r in results:
        if r.vacuumed_by_driver:
            lines += [
                "",
                f"{r.backend}: autovacuum is off on this server, so the driver ran VACUUM on "
                "the schema's tables at each sample (what autovacuum does on a default server).",
            ]
    for r in results:
        lines += ["", f"## {r.backend}: throughput over time", "", "| s | done | jobs/s | store |"]
        lines.append("|---|---|---|---|")
        lines += [f"| {s.t:.0f} | {s.done:,} | {s.rate:,.0f} | {mib(s.store)} |" for s in r.samples]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="redis,postgres,sqlite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--producer", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.worker:
        run_worker(options.worker, queue_names(options.queues), options.concurrency)
        return 0
    if options.producer:
        run_producer(options)
        return 0
    names = [n.strip() for n in options.backend.split(",") if n.strip()]
    unknown = [n for n in names if n not in STORES]
    if unknown:
        print(f"unknown backend(s): {', '.join(unknown)}; choose from {', '.join(STORES)}")
        return 2
    results = [run_backend(options, name) for name in names]
    print(report(results, options))
    if options.out:
        raw = [r.__dict__ for r in results]
        options.out.write_text(json.dumps(raw, default=lambda o: o.__dict__, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
