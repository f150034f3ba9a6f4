"""Load check of ``genqueue serve`` on SQLite: submits per second, and the DLQ pages'
latency with 100,000 dead letter entries (issue 11).

1. **Submit.** One ``genqueue serve --no-workers`` process (one uvicorn process, a fresh
   SQLite file in a temp dir, admin and client tokens from the environment) on a free
   loopback port. A separate load-generator process drives ``POST /api/v1/jobs`` with the
   client token over keep-alive connections, ``--concurrency`` requests in flight, for
   ``--jobs`` jobs per run, ``--runs`` times after a warm-up. The default generator
   speaks HTTP/1.1 by hand (one connection per sender, a tenth of httpx's CPU per
   request); ``--client httpx`` uses ``httpx.AsyncClient``, which needs ~1-3 ms of CPU
   per request here and so measures itself rather than the server. Reported per run:
   accepted jobs/s (202s / wall time), latency p50/p99, the CPU seconds the server and the
   client used per 1,000 jobs (which side was saturated); then the median run, and that
   every accepted job is stored (``GET /api/v1/queues`` and a COUNT on the file).
2. **DLQ.** A second SQLite file is filled with ``--entries`` dead letters (three error
   kinds, 50 users, five tasks on three queues, spread over five days) through the
   library's own path: ``enqueue_many``, ``fetch`` and the worker's failure plan
   (``execution.plan``) stored with ``backend.move``, 1,000 at a time. (Running real
   jobs to death would take far longer and store the same rows.) A fresh server on that
   file then answers ``GET /api/v1/dlq`` (a page of 100) and the dashboard's ``/dlq``
   page (a page of 50 with the matching count and the fingerprint groups; logged in
   through its login form) with filters of one, two and three fields, and on the
   dashboard free-text search (the API has none); ``--requests`` sequential requests
   each, median and p95.

    .venv/bin/python bench/service_load.py [--jobs 20000] [--concurrency 32] [--runs 3]
        [--client raw|httpx] [--entries 100000] [--requests 50] [--only submit|dlq]
        [--dlq-db PATH] [--profile DIR]

``--dlq-db PATH`` keeps the filled DLQ file for the next run (filled when missing);
``--profile DIR`` runs each server under cProfile (``DIR/submit.prof``, ``DIR/dlq.prof``).
Not a test: a time limit in the test suite would fail on a busy machine. Targets (issue
11): >= 2,000 submits/s; the DLQ page with filters < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GENQUEUE = Path(sys.executable).with_name("genqueue")
READY_WITHIN = 60.0
USERS = 50
SPAN = 5 * 24 * 3600.0
FILL_BATCH = 1000


# -- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    admin: str
    client: str
    pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Runs ``genqueue ARGS...`` under cProfile, writing the stats to PATH: ``-c SNIPPET PATH ARGS``.
PROFILED = (
    "import cProfile, sys; out = sys.argv[1]; sys.argv = ['genqueue', *sys.argv[2:]]; "
    "from genqueue.cli.main import run; cProfile.run('run()', out)"
)


@contextlib.contextmanager
def serve(db: Path, log: Path, profile: Path | None = None) -> Iterator[Server]:
    """``genqueue serve --no-workers`` on ``db``; stopped (SIGTERM, then SIGKILL) on exit.
    With ``profile``, the server runs under cProfile and writes its stats there."""
    import httpx

    port = _free_port()
    admin, client = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "GENQUEUE_ADMIN_TOKEN": admin,
        "GENQUEUE_CLIENT_TOKENS": f"bench:{client}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    env.pop("GENQUEUE_APP", None)
    command = [
        *([sys.executable, "-c", PROFILED, str(profile)] if profile else [str(GENQUEUE)]),
        "serve",
        "--no-workers",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--app",
        "service_app:app",
        "--backend",
        f"sqlite:///{db}",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"genqueue serve exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v1/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"genqueue serve not ready after {READY_WITHIN:.0f} s")
            time.sleep(0.1)
        yield Server(url, admin, client, proc.pid)
    finally:
        # uvicorn re-raises the signal after its graceful shutdown: SIGINT then becomes a
        # KeyboardInterrupt, which cProfile survives to write its stats (SIGTERM kills).
        proc.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- 1. submits ------------------------------------------------------------------------------


def _bodies(first: int, jobs: int) -> list[bytes]:
    import orjson

    return [
        orjson.dumps(
            {
                "task": "bench.noop",
                "data": {"prompt": f"a pixel-art knight #{i}", "width": 64, "height": 64},
                "user_id": f"user-{i % USERS:02d}",
            }
        )
        for i in range(first, first + jobs)
    ]


async def _send_httpx(
    url: str, token: str, todo: Iterator[bytes], concurrency: int, record: Any
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def sender() -> None:
            for body in todo:  # one iterator shared by every sender
                started = time.perf_counter()
                response = await http.post("/api/v1/jobs", content=body)
                record(started, response.status_code)

        await asyncio.gather(*(sender() for _ in range(concurrency)))


async def _send_raw(
    url: str, token: str, todo: Iterator[bytes], concurrency: int, record: Any
) -> None:
    """HTTP/1.1 keep-alive by hand: one connection per sender, one request at a time on
    it. A tenth of httpx's CPU per request, so the client does not cap the rate."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: "
    ).encode()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for body in todo:
            started = time.perf_counter()
            writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            record(started, status)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(sender() for _ in range(concurrency)))


async def _drive(
    url: str, token: str, jobs: int, concurrency: int, first: int, client: str
) -> dict[str, Any]:
    """POST ``jobs`` jobs with ``concurrency`` in flight; runs in the load-generator process."""
    todo = iter(_bodies(first, jobs))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def record(started: float, status: int) -> None:
        latencies.append(time.perf_counter() - started)
        statuses[status] += 1

    send = _send_raw if client == "raw" else _send_httpx
    cpu, started = time.process_time(), time.perf_counter()
    await send(url, token, todo, concurrency, record)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "wall": wall,
        "accepted": statuses[202],
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "client_cpu": cpu,
    }


def _drive_in_process(
    server: Server, jobs: int, options: argparse.Namespace, first: int
) -> dict[str, Any]:
    """One run of the load generator as its own process; its JSON result."""
    import psutil

    config = {
        "url": server.url,
        "jobs": jobs,
        "concurrency": options.concurrency,
        "first": first,
        "client": options.client,
    }
    env = {**os.environ, "BENCH_TOKEN": server.client}
    target = psutil.Process(server.pid)
    before = sum(target.cpu_times()[:2])
    done = subprocess.run(
        [sys.executable, __file__, "--drive", json.dumps(config)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    result["server_cpu"] = sum(target.cpu_times()[:2]) - before
    return result


def _stored(server: Server, db: Path) -> tuple[int, int]:
    """Jobs in the bench queue according to the API, and according to the file."""
    import httpx

    answer = httpx.get(
        f"{server.url}/api/v1/queues", headers={"Authorization": f"Bearer {server.admin}"}
    ).json()
    by_api = sum(answer["queues"].get("bench", {}).values())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        by_file = conn.execute("SELECT COUNT(*) FROM jobs WHERE queue = 'bench'").fetchone()[0]
    return by_api, int(by_file)


def submit_check(options: argparse.Namespace, tmp: Path) -> None:
    db = tmp / "submit.db"
    print(
        f"\n## submit: POST /api/v1/jobs, {options.jobs:,} jobs per run, "
        f"concurrency {options.concurrency}, {options.runs} runs after a warm-up of "
        f"{options.warmup:,}; fresh SQLite file, server with --no-workers"
    )
    profile = Path(options.profile) / "submit.prof" if options.profile else None
    with serve(db, tmp / "serve-submit.log", profile) as server:
        sent = 0
        if options.warmup:
            _drive_in_process(server, options.warmup, options, sent)
            sent += options.warmup
        runs = []
        for n in range(options.runs):
            result = _drive_in_process(server, options.jobs, options, sent)
            sent += options.jobs
            runs.append(result)
            rate = result["accepted"] / result["wall"]
            print(
                f"run {n + 1}: {rate:,.0f} jobs/s accepted ({result['accepted']:,} x 202 in "
                f"{result['wall']:.2f} s; statuses {result['statuses']}), latency p50 "
                f"{result['p50'] * 1000:.1f} ms p99 {result['p99'] * 1000:.1f} ms; CPU per "
                f"1,000 jobs: server {result['server_cpu'] / options.jobs * 1000:.3f} s, "
                f"client {result['client_cpu'] / options.jobs * 1000:.3f} s; "
                f"load {os.getloadavg()[0]:.2f}"
            )
        by_api, by_file = _stored(server, db)
    rates = [r["accepted"] / r["wall"] for r in runs]
    median = sorted(runs, key=lambda r: r["accepted"] / r["wall"])[len(runs) // 2]
    print(
        f"median: {statistics.median(rates):,.0f} jobs/s (target >= 2,000), latency p50 "
        f"{median['p50'] * 1000:.1f} ms p99 {median['p99'] * 1000:.1f} ms (median run)"
    )
    print(
        f"stored: {by_api:,} jobs by GET /api/v1/queues, {by_file:,} in the file; "
        f"{sent:,} submitted (warm-up included): "
        + ("all stored" if by_api == by_file == sent else "MISMATCH")
    )


# -- 2. the DLQ ------------------------------------------------------------------------------

TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/jobs.py", line 48, in generate
    response = await client.generate(prompt=ctx.data["prompt"], size=size)
  File "/srv/app/provider.py", line 112, in generate
    return await self._post("/generate-image-pixflux", body)
  File "/srv/app/provider.py", line 87, in _post
    response.raise_for_status()
  File "/usr/lib/python3/site-packages/httpx/_models.py", line 829, in raise_for_status
    raise HTTPStatusError(message, request=request, response=response)
httpx.HTTPStatusError: {message}"""

#: error kind -> (status, message) variants; ``{n}`` varies (normalised by the fingerprint).
FAILURES = {
    "auth": [(401, "401 Unauthorized: invalid API key for account acct-{n}")],
    "validation": [
        (422, "422 Unprocessable Entity: description is longer than 1000 characters"),
        (422, "422 Unprocessable Entity: width {n} is not a multiple of 16"),
    ],
    "server": [
        (503, "503 Service Unavailable: upstream generation backend overloaded"),
        (500, "500 Internal Server Error: generation failed (request {n})"),
    ],
}
#: One entry in this many fails with the rare message (the "rare search" needle).
RARE_EVERY = 200
RARE = (422, "422 Unprocessable Entity: prompt rejected by the NSFW filter")


def _failure(rng: random.Random, kind: str) -> Any:
    from genqueue import ClassifiedError, ErrorKind

    status, message = (
        RARE
        if kind == "validation" and rng.randrange(RARE_EVERY) == 0
        else rng.choice(FAILURES[kind])
    )
    message = message.format(n=rng.randrange(10_000))
    return ClassifiedError(
        ErrorKind(kind),
        kind == "server",
        message,
        "httpx.HTTPStatusError",
        stack=TRACEBACK.format(message=message),
        status=status,
    )


async def _fill(url: str, entries: int, seed: int) -> None:
    from service_app import DLQ_TASKS

    from genqueue import App, FakeClock, JobRequest, RetryPolicy
    from genqueue.execution import Outcome, OutcomeKind, PlanContext, plan

    rng = random.Random(seed)
    clock = FakeClock(start=time.time() - SPAN)
    app = App(url, clock=clock)
    for name, queue in DLQ_TASKS:
        app.task(name, queue=queue)(_never)
    queues = sorted({q for _, q in DLQ_TASKS})
    step = SPAN / entries
    policy = RetryPolicy(max_retries=0)
    async with app:
        for start in range(0, entries, FILL_BATCH):
            requests = []
            for i in range(start, min(entries, start + FILL_BATCH)):
                task, queue = rng.choice(DLQ_TASKS)
                data = {"prompt": f"a pixel-art knight #{i}", "width": 64, "style": "16-bit"}
                user = f"user-{rng.randrange(USERS):02d}"
                requests.append(JobRequest(task, data, queue=queue, user_id=user, max_retries=0))
            await app.queue.enqueue_many(requests)
            claimed = await app.backend.fetch(queues, "bench-filler", len(requests), 3600)
            assert len(claimed) == len(requests), "the fill claims every job it enqueued"
            moves = []
            for job in claimed:
                clock.advance(step)
                kind = rng.choice(("auth", "validation", "server"))
                paid = replace(
                    job, cost={"usd": 0.004, "generations": 1} if kind == "server" else {}
                )
                context = PlanContext(clock.now(), "bench-worker-1", policy, app.retention)
                failed = Outcome(OutcomeKind.FAILED, error=_failure(rng, kind))
                moves.append(plan(paid, failed, context).move)
            assert all(await app.backend.move(moves)), "every job becomes a dead letter"


async def _never(ctx: Any) -> None:
    raise AssertionError("never runs")


def fill_dlq(db: Path, entries: int) -> float:
    sys.path.insert(0, str(HERE))
    started = time.perf_counter()
    asyncio.run(_fill(f"sqlite:///{db}", entries, seed=11))
    return time.perf_counter() - started


def _dlq_cases(db: Path) -> list[tuple[str, dict[str, str]]]:
    """Filters of one, two and three fields on a real user, kind and task of the file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        user, kind, task = conn.execute(
            "SELECT user_id, error_kind, task FROM dead_letters "
            "GROUP BY 1, 2, 3 ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()
    return [
        ("no filter", {}),
        ("user", {"user": user}),
        ("user+kind", {"user": user, "kind": kind}),
        ("user+kind+task", {"user": user, "kind": kind, "task": task}),
        ("kind", {"kind": kind}),
        ("task", {"task": task}),
    ]


def _matching(db: Path, params: dict[str, str]) -> int:
    """Entries matching the filter (and the search text, case-insensitively, in the last
    error's message or the failure reason, as the dashboard matches it)."""
    columns = {"user": "d.user_id", "kind": "d.error_kind", "task": "d.task"}
    clauses = [f"{columns[k]} = ?" for k in params if k in columns]
    values = [v for k, v in params.items() if k in columns]
    if "q" in params:
        clauses.append(
            "instr(lower(d.reason || char(10) || "
            "coalesce(json_extract(j.last_error, '$.message'), '')), lower(?)) > 0"
        )
        values.append(params["q"])
    sql = "SELECT COUNT(*) FROM dead_letters d JOIN jobs j ON j.id = d.job_id WHERE " + (
        " AND ".join(clauses) or "1"
    )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(sql, values).fetchone()[0])


def _time_requests(
    http: Any, path: str, params: dict[str, str], count: int, server: Server
) -> dict[str, Any]:
    """Wall times of ``count`` requests, and the server's CPU time per request (less
    sensitive to other load on the machine than wall time)."""
    import psutil

    for _ in range(3):  # warm-up: connection, caches, first-use imports
        http.get(path, params=params)
    process = psutil.Process(server.pid)
    cpu = sum(process.cpu_times()[:2])
    times, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        response = http.get(path, params=params)
        times.append(time.perf_counter() - started)
        if response.status_code != 200 or response.url.path != path:
            raise SystemExit(f"GET {path} {params}: {response.status_code} at {response.url}")
        size = len(response.content)
    return {
        "median": statistics.median(times),
        "p95": _percentile(times, 0.95),
        "cpu": (sum(process.cpu_times()[:2]) - cpu) / count,
        "size": size,
    }


def dlq_check(options: argparse.Namespace, tmp: Path) -> None:
    import httpx

    db = Path(options.dlq_db) if options.dlq_db else tmp / "dlq.db"
    if not db.exists():
        seconds = fill_dlq(db, options.entries)
        print(f"\nfilled {options.entries:,} dead letters in {seconds:.1f} s ({db.name})")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        total = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    print(
        f"\n## DLQ: {total:,} entries, {options.requests} sequential requests per line after "
        f"3 warm-up requests; API page 100 entries, dashboard page 50 + count + groups"
    )
    cases = _dlq_cases(db)
    user = cases[1][1]["user"]
    searches = [
        ("user+search (common)", {"user": user, "q": "unauthorized"}),
        ("user+search (rare)", {"user": user, "q": "nsfw"}),
        ("search (rare)", {"q": "nsfw"}),
    ]
    profile = Path(options.profile) / "dlq.prof" if options.profile else None
    with serve(db, tmp / "serve-dlq.log", profile) as server:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin}"}, timeout=60
        )
        web = httpx.Client(base_url=server.url, timeout=60)
        with api, web:
            login = web.post("/login", data={"token": server.admin, "next": "/dlq"})
            if login.status_code != 303 or not web.cookies:
                raise SystemExit(f"dashboard login failed: {login.status_code}")
            lines = [("API  /api/v1/dlq", api, "/api/v1/dlq", c) for c in cases]
            lines += [("page /dlq", web, "/dlq", c) for c in cases + searches]
            lines += [("API  /dlq/stats", api, "/api/v1/dlq/stats", c) for c in cases[:3]]
            for label, http, path, (name, params) in lines:
                result = _time_requests(http, path, params, options.requests, server)
                target = "" if name == "no filter" or "stats" in label else "  (target < 50 ms)"
                print(
                    f"{label:<17} {name:<21} matching {_matching(db, params):>6,}  median "
                    f"{result['median'] * 1000:6.1f} ms  p95 {result['p95'] * 1000:6.1f} ms  "
                    f"server CPU {result['cpu'] * 1000:5.1f} ms  "
                    f"{result['size'] / 1024:4.0f} KiB{target}"
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="submits per run")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: hand-written HTTP/1.1 keep-alive, or httpx.AsyncClient",
    )
    parser.add_argument("--warmup", type=int, default=1000, help="submits before the runs")
    parser.add_argument("--entries", type=int, default=100_000, help="dead letters to fill")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per line")
    parser.add_argument("--only", choices=("submit", "dlq"))
    parser.add_argument("--dlq-db", help="keep the filled DLQ file here (reused if present)")
    parser.add_argument(
        "--profile", metavar="DIR", help="run the servers under cProfile; stats to DIR/*.prof"
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # the load-generator process
    options = parser.parse_args()
    if options.drive:
        config = json.loads(options.drive)
        token = os.environ["BENCH_TOKEN"]
        print(json.dumps(asyncio.run(_drive(token=token, **config))))
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    stack = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m)] or ["h11"]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load average {load}, "
        f"one uvicorn process ({'+'.join(stack)}; genqueue serve --no-workers) on SQLite; "
        f"jobs {options.jobs:,}, "
        f"concurrency {options.concurrency}, client {options.client}, runs {options.runs}, entries "
        f"{options.entries:,}, requests {options.requests}"
    )
    with tempfile.TemporaryDirectory(prefix="genqueue-service-bench-") as name:
        tmp = Path(name)
        if options.only in (None, "submit"):
            submit_check(options, tmp)
        if options.only in (None, "dlq"):
            dlq_check(options, tmp)


if __name__ == "__main__":
    main()
