"""What every peer adapter shares: the completion counter, the flaky job and the CLI.

The driver (``run.py``) talks to each peer through one command line, run with the
Python of the peer's venv and ``bench/`` as the working directory::

    python -m peers peer_<name> probe                                  # versions, bulk API?
    python -m peers peer_<name> enqueue --mode single|bulk --task noop|flaky --start S --count C
                                        [--mark M]  # also time the first M jobs
    python -m peers peer_<name> worker                                 # runs until SIGTERM

The configuration comes from the environment, so that module-level broker objects
(dramatiq, celery, huey, taskiq) see it in the processes their own CLIs start:

* ``BENCH_CONFIG``: the peer configuration (``huey-sqlite``, ``celery-prefork``, ...)
* ``BENCH_REDIS_URL``: the benchmark's own Redis (never the system one)
* ``BENCH_DATA_DIR``: a scratch directory for file-backed queues (SQLite)
* ``BENCH_SYNC_COUNTER=1``: write each completion at once (rq's fork-per-job worker,
  whose work horse leaves with ``os._exit`` before a background flush could run)

Completion signalling is the same for every peer: a no-op job calls ``COUNTER.bump()``,
which only increments an in-process counter; a daemon thread flushes it to Redis every
20 ms (``INCRBY bench:done``, plus the wall-clock time of the process's first and last
completion in the hashes ``bench:first`` / ``bench:last``), so a job costs no extra
round trip.

The flaky job of the retry scenario makes one round trip per attempt (a Lua script):
the first attempt of job ``i`` wins ``SET bench:try:<i> NX`` and the adapter raises its
peer's retry exception; a later attempt records ``SADD bench:ok i``, ``INCR
bench:succ`` and the time of the latest success in ``bench:last_ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis

FLUSH_EVERY = 0.02
BULK_CHUNK = 1000
LOG_LEVEL = logging.WARNING

K_DONE = "bench:done"
K_FIRST = "bench:first"
K_LAST = "bench:last"
K_OK = "bench:ok"
K_SUCC = "bench:succ"
K_LAST_OK = "bench:last_ok"
K_TRY = "bench:try:"

_FLAKY_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX') then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
if tonumber(ARGV[2]) > last then
  redis.call('SET', KEYS[4], ARGV[2])
end
return 1
"""


def config_name(default: str) -> str:
    return os.environ.get("BENCH_CONFIG") or default


def redis_url() -> str:
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise SystemExit("BENCH_REDIS_URL is not set: run the peers through bench/peers/run.py")
    return url


def data_dir() -> str:
    path = os.environ.get("BENCH_DATA_DIR") or os.path.join(os.getcwd(), "results", "raw")
    os.makedirs(path, exist_ok=True)
    return path


#: The PostgreSQL server of the genqueue-postgres configs (trust auth on this machine).
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_SCHEMA_FILE = "postgres-schema.txt"
POSTGRES_SCHEMA_PREFIX = "genqueue_bench_"


def postgres_url() -> str:
    """``BENCH_POSTGRES_URL`` (or the machine's server) with a schema of this repetition.

    The driver empties ``BENCH_DATA_DIR`` between repetitions; the first process of one
    names a fresh schema there (and drops the bench schemas of earlier ones), the others
    read it, so every phase of a repetition starts on empty tables."""
    import uuid

    base = os.environ.get("BENCH_POSTGRES_URL") or POSTGRES_DEFAULT
    path = os.path.join(data_dir(), POSTGRES_SCHEMA_FILE)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        deadline = time.monotonic() + 5
        name = ""
        while not name and time.monotonic() < deadline:  # its creator may be writing it
            with open(path) as found:
                name = found.read().strip()
            time.sleep(0.0 if name else 0.01)
    else:
        name = POSTGRES_SCHEMA_PREFIX + uuid.uuid4().hex[:12]
        _drop_bench_schemas(base)
        with os.fdopen(fd, "w") as out:
            out.write(name)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema={name}"


def _drop_bench_schemas(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
            (POSTGRES_SCHEMA_PREFIX + "%",),
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def setup_logging() -> None:
    logging.basicConfig(level=LOG_LEVEL, format="%(asctime)s %(name)s %(levelname)s %(message)s")


# -- Redis client, one per process (fork-safe) ---------------------------------------------


class _PerProcess:
    """The harness's redis-py client and flaky script, recreated after a fork."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.client: redis.Redis | None = None
        self.flaky: Any = None

    def get(self) -> _PerProcess:
        if self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():
                    self.client = redis.Redis.from_url(redis_url())
                    self.flaky = self.client.register_script(_FLAKY_LUA)
                    self.pid = os.getpid()
        return self


_PROCESS = _PerProcess()


def client() -> redis.Redis:
    """A redis-py client for the harness's own traffic."""
    c = _PROCESS.get().client
    assert c is not None
    return c


# -- completion counter --------------------------------------------------------------------


class Counter:
    """Counts completed no-op jobs in this process and reports them to Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._sync = False
        self._count = 0
        self._flushed = 0
        self._first = 0.0
        self._last = 0.0
        self._first_sent = False

    def _reset_for_this_process(self) -> None:
        self._pid = os.getpid()
        self._sync = os.environ.get("BENCH_SYNC_COUNTER") == "1"
        self._count = self._flushed = 0
        self._first = self._last = 0.0
        self._first_sent = False
        if not self._sync:
            thread = threading.Thread(target=self._flush_loop, name="bench-counter", daemon=True)
            thread.start()

    def bump(self) -> None:
        now = time.time()
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._reset_for_this_process()
        if self._sync:
            pid = str(os.getpid())
            pipe = client().pipeline(transaction=False)
            pipe.incrby(K_DONE, 1)
            pipe.hsetnx(K_FIRST, pid, repr(now))
            pipe.hset(K_LAST, pid, repr(now))
            pipe.execute()
            return
        with self._lock:
            self._count += 1
            if not self._first:
                self._first = now
            self._last = now

    def _flush_loop(self) -> None:
        pid = str(os.getpid())
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                delta = self._count - self._flushed
                first, last = self._first, self._last
                self._flushed = self._count
            if not delta:
                continue
            try:
                pipe = client().pipeline(transaction=False)
                pipe.incrby(K_DONE, delta)
                if not self._first_sent:
                    pipe.hset(K_FIRST, pid, repr(first))
                pipe.hset(K_LAST, pid, repr(last))
                pipe.execute()
                self._first_sent = True
            except Exception as exc:  # keep counting; the next flush carries the delta
                with self._lock:
                    self._flushed -= delta
                print(f"bench counter flush failed: {exc!r}", file=sys.stderr)


COUNTER = Counter()


def flaky_should_fail(i: int) -> bool:
    """One attempt of flaky job ``i``: True on the first attempt (the caller raises)."""
    keys = [f"{K_TRY}{i}", K_OK, K_SUCC, K_LAST_OK]
    return _PROCESS.get().flaky(keys=keys, args=[i, repr(time.time())]) == 0


# -- adapters and the command line ---------------------------------------------------------


class Adapter:
    """One peer configuration. Subclasses set the class attributes and implement
    ``single`` (one job), optionally ``bulk`` (a chunk of at most 1,000 jobs) and
    ``worker``. Async peers set ``is_async`` and make ``setup``/``single``/``bulk``/
    ``teardown`` coroutines."""

    #: distribution names whose versions are reported
    packages: Sequence[str] = ()
    is_async = False
    has_bulk = False

    def setup(self) -> Any: ...

    def teardown(self) -> Any: ...

    def single(self, task: str, i: int) -> Any:
        raise NotImplementedError

    def bulk(self, task: str, ids: Sequence[int]) -> Any:
        raise NotImplementedError

    def worker(self) -> None:
        raise NotImplementedError


def chunks(start: int, count: int, size: int = BULK_CHUNK) -> Iterator[range]:
    end = start + count
    for lo in range(start, end, size):
        yield range(lo, min(lo + size, end))


def _segments(start: int, count: int, mark: int) -> list[range]:
    """The ids to enqueue, split after the first ``mark`` (timed separately)."""
    end = start + count
    if 0 < mark < count:
        return [range(start, start + mark), range(start + mark, end)]
    return [range(start, end)]


def _enqueue_sync(
    adapter: Adapter, mode: str, task: str, start: int, count: int, mark: int
) -> list[float]:
    """Enqueue and return the clock at the start and at the end of each segment."""
    adapter.setup()
    try:
        times = [time.time()]
        if mode == "bulk":
            for ids in chunks(start, count):
                adapter.bulk(task, ids)
            times.append(time.time())
        else:
            single = adapter.single
            for segment in _segments(start, count, mark):
                for i in segment:
                    single(task, i)
                times.append(time.time())
    finally:
        adapter.teardown()
    return times


async def _enqueue_async(
    adapter: Adapter, mode: str, task: str, start: int, count: int, mark: int
) -> list[float]:
    await adapter.setup()
    try:
        times = [time.time()]
        if mode == "bulk":
            for ids in chunks(start, count):
                await adapter.bulk(task, ids)
            times.append(time.time())
        else:
            single = adapter.single
            for segment in _segments(start, count, mark):
                for i in segment:
                    await single(task, i)
                times.append(time.time())
    finally:
        await adapter.teardown()
    return times


def versions(packages: Sequence[str]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def main(adapter_for: Any, argv: Sequence[str] | None = None) -> None:
    """The CLI of one peer module; ``adapter_for(config_name)`` builds its adapter."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe")
    sub.add_parser("worker")
    enq = sub.add_parser("enqueue")
    enq.add_argument("--mode", choices=["single", "bulk"], default="single")
    enq.add_argument("--task", choices=["noop", "flaky"], default="noop")
    enq.add_argument("--start", type=int, default=0)
    enq.add_argument("--count", type=int, required=True)
    enq.add_argument("--mark", type=int, default=0, help="also time the first MARK jobs")
    args = parser.parse_args(argv)

    setup_logging()
    adapter: Adapter = adapter_for(config_name(""))
    if args.cmd == "probe":
        out = {"versions": versions(adapter.packages), "bulk": adapter.has_bulk}
        print(json.dumps(out), flush=True)
        return
    if args.cmd == "worker":
        adapter.worker()
        return
    if args.mode == "bulk" and not adapter.has_bulk:
        raise SystemExit("this peer has no bulk enqueue API")
    job = (adapter, args.mode, args.task, args.start, args.count, args.mark)
    times = asyncio.run(_enqueue_async(*job)) if adapter.is_async else _enqueue_sync(*job)
    out = {"t0": times[0], "t1": times[-1], "count": args.count}
    if len(times) == 3:
        out["t_mark"], out["mark"] = times[1], args.mark
    print(json.dumps(out), flush=True)
