"""The side-by-side benchmark driver: genqueue and its Python peers on one local Redis.

Run it with the Python of ``bench/.venv`` (``bash bench/run.sh`` does), from anywhere::

    bench/.venv/bin/python bench/peers/run.py [--only a,b] [--n 20000] [--reps 3]

It starts its own ``redis-server`` on a free port in a temporary directory (nothing is
persisted) and never touches any other Redis. For each repetition and each peer
configuration (interleaved: rep 1 of every config, then rep 2, ...) it measures:

1. **enqueue single**: one call at a time, 5,000 jobs (``--single-n``), and **enqueue
   bulk**: the peer's batch API in chunks of 1,000, for all N jobs. A peer with no bulk
   API fills the queue one call at a time, and that run over N jobs is its single figure.
   Only the enqueue loop is timed (not interpreter start-up, imports or connecting).
2. **drain**: ONE worker process starts on the full queue (N no-op jobs); throughput is
   (N-1) / (last - first completion), so start-up is excluded; wall time is from starting
   the worker to the last completion. Also: worker peak RSS (psutil every 50 ms, summed
   over the process tree), Redis commands per job (``total_commands_processed`` delta / N)
   and Redis CPU per job.
3. **retry**: a fresh worker; a warm-up job confirms it is ready; then NR jobs that fail
   once and then succeed (retry delay 0) are enqueued with the bulk API, else one by one.
   Total = enqueue start to last success; lost = NR - |ok|; duplicates = succ - |ok|.

Redis is flushed (and file-backed queues deleted) between phases. Each phase is bounded
(``--timeout``, 120 s); a worker runs in its own session and is stopped by PID (SIGTERM,
then SIGKILL for its process group). Failures are recorded, not fatal.

Output: a Markdown table on stdout and in ``bench/results/latest.md``, all raw runs in
``bench/results/latest.json``, worker logs and ``runs.jsonl`` in ``bench/results/raw/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peers import report

BENCH = Path(__file__).resolve().parent.parent
RESULTS = BENCH / "results"
MIB = 1024 * 1024
POLL = 0.02
#: seconds a worker gets to exit after SIGTERM before its process group is killed
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Config:
    name: str
    module: str
    venv: str = ".venv"
    #: the row its figures are compared with
    baseline: str = "genqueue-redis"
    #: the queue lives in a file, not in Redis
    file_backed: bool = False
    n_cap: int | None = None
    nr_cap: int | None = None
    #: part of a default run (the others run only when named with --only)
    default: bool = True
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


CONFIGS = [
    Config("genqueue-redis", "peer_genqueue", note="concurrency 100"),
    Config("genqueue-sqlite", "peer_genqueue", file_backed=True, note="concurrency 100"),
    # PostgreSQL (the machine's server, or BENCH_POSTGRES_URL): only when named with --only.
    Config(
        "genqueue-postgres",
        "peer_genqueue",
        default=False,
        note="concurrency 100, PostgreSQL",
    ),
    Config(
        "genqueue-postgres-c10",
        "peer_genqueue",
        baseline="genqueue-postgres",
        default=False,
        note="concurrency 10 (default), PostgreSQL",
    ),
    # Producers in synchronous code (app.blocking()), like RQ's, Huey's and Celery's.
    Config(
        "genqueue-redis-sync",
        "peer_genqueue",
        default=False,
        note="concurrency 100; enqueue from synchronous code (app.blocking())",
    ),
    # What a user gets without tuning: the default concurrency of Worker and the CLI.
    Config("genqueue-redis-c10", "peer_genqueue", default=False, note="concurrency 10 (default)"),
    Config(
        "genqueue-sqlite-c10",
        "peer_genqueue",
        baseline="genqueue-sqlite",
        file_backed=True,
        default=False,
        note="concurrency 10 (default)",
    ),
    Config(
        "rq",
        "peer_rq",
        n_cap=1000,
        nr_cap=200,
        env={"BENCH_SYNC_COUNTER": "1"},
        note="default Worker, fork per job",
    ),
    Config("rq-simple", "peer_rq", n_cap=5000, nr_cap=1000, note="SimpleWorker"),
    Config("arq", "peer_arq", venv=".venv-arq", note="max_jobs 100, poll 0.5 s"),
    Config(
        "arq-poll10ms", "peer_arq", venv=".venv-arq", default=False, note="max_jobs 100, poll 10 ms"
    ),
    Config("saq", "peer_saq", venv=".venv-saq", note="concurrency 100"),
    Config("dramatiq", "peer_dramatiq", note="1 process x 8 threads"),
    Config("celery-solo", "peer_celery", note="solo pool"),
    Config("celery-prefork", "peer_celery", note="prefork, 2 children"),
    Config("huey", "peer_huey", note="1 thread"),
    Config(
        "huey-sqlite", "peer_huey", baseline="genqueue-sqlite", file_backed=True, note="1 thread"
    ),
    Config("taskiq-stream", "peer_taskiq", note="1 worker, 100 async"),
    Config("taskiq-list", "peer_taskiq", note="1 worker, 100 async, no ack"),
    Config("streaq", "peer_streaq", note="concurrency 100"),
    Config("streaq-c32", "peer_streaq", default=False, note="concurrency 32"),
]
BY_NAME = {c.name: c for c in CONFIGS}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class PhaseError(Exception):
    pass


# -- our own Redis -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` in a temporary directory, nothing persisted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True)
        argv = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        self.version = str(self.client.info("server")["redis_version"])

    def flush(self) -> None:
        self.client.flushall()

    def commands(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.shutdown(nosave=True)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- processes of one peer config -----------------------------------------------------------


class Peer:
    def __init__(self, config: Config, server: RedisServer, workdir: Path, logdir: Path) -> None:
        self.config = config
        self.server = server
        self.python = str(BENCH / config.venv / "bin" / "python")
        self.data_dir = workdir / "data" / config.name
        self.logdir = logdir
        self.env = dict(os.environ)
        self.env.pop("VIRTUAL_ENV", None)
        self.env.pop("PYTHONPATH", None)
        self.env.update(
            PYTHONPATH=str(BENCH),
            PYTHONUNBUFFERED="1",
            BENCH_CONFIG=config.name,
            BENCH_REDIS_URL=server.url,
            BENCH_DATA_DIR=str(self.data_dir),
            **config.env,
        )

    def argv(self, *args: str) -> list[str]:
        return [self.python, "-m", "peers", self.config.module, *args]

    def call(self, *args: str, timeout: float) -> dict[str, Any]:
        """Run one peer command to completion; its last stdout line is JSON."""
        try:
            done = subprocess.run(
                self.argv(*args),
                cwd=BENCH,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PhaseError(f"`{' '.join(args)}` took more than {timeout:.0f} s") from exc
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise PhaseError(f"`{' '.join(args)}` exited {done.returncode}: {tail}")
        return json.loads(lines[-1])

    def enqueue(
        self, mode: str, task: str, start: int, count: int, timeout: float, mark: int = 0
    ) -> dict[str, Any]:
        args = ["--mode", mode, "--task", task, "--start", str(start), "--count", str(count)]
        out = self.call("enqueue", *args, "--mark", str(mark), timeout=timeout)
        out["rate"] = count / max(out["t1"] - out["t0"], 1e-9)
        if "t_mark" in out:
            out["mark_rate"] = out["mark"] / max(out["t_mark"] - out["t0"], 1e-9)
        return out

    def reset(self) -> None:
        self.server.flush()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def storage_bytes(self) -> int:
        if self.config.name.startswith("genqueue-postgres"):
            return postgres_bytes(self.data_dir)
        if self.config.file_backed:
            return sum(p.stat().st_size for p in self.data_dir.iterdir() if p.is_file())
        return self.server.memory()

    def start_worker(self, tag: str) -> WorkerProcess:
        return WorkerProcess(
            self.argv("worker"), self.env, self.logdir / f"{self.config.name}-{tag}.log"
        )


def postgres_bytes(data_dir: Path) -> int:
    """Bytes of every table (with indexes and TOAST) of the repetition's schema."""
    from peers import common

    marker = data_dir / common.POSTGRES_SCHEMA_FILE
    if not marker.exists():
        return 0
    import psycopg

    url = os.environ.get("BENCH_POSTGRES_URL") or common.POSTGRES_DEFAULT
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (marker.read_text().strip(),),
        ).fetchone()
    return int(row[0]) if row else 0


class WorkerProcess:
    """A worker in its own session, with its process tree's RSS sampled every 50 ms."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            cwd=BENCH,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.peak_tree = 0
        self.peak_largest = 0
        self.stop_seconds = 0.0
        self.exit_code: int | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    sizes.append(p.memory_info().rss)
            if sizes:
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_largest = max(self.peak_largest, *sizes)
            self._stop.wait(0.05)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise PhaseError(f"worker exited with code {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        """SIGTERM to the worker, then SIGKILL to its whole process group."""
        self._stop.set()
        t0 = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.stop_seconds = time.monotonic() - t0
        self.exit_code = self.proc.returncode
        self._sampler.join(1)
        self._log.close()


def wait_until(
    predicate: Callable[[], bool], deadline: float, worker: WorkerProcess | None
) -> bool:
    while True:
        if predicate():
            return True
        if worker is not None:
            worker.check_alive()
        if time.time() > deadline:
            return False
        time.sleep(POLL)


# -- one repetition of one config -----------------------------------------------------------


@dataclass
class Plan:
    n: int
    nr: int
    single_n: int
    timeout: float
    settle: float


def run_config(peer: Peer, has_bulk: bool, plan: Plan) -> dict[str, Any]:
    cfg = peer.config
    n = min(plan.n, cfg.n_cap or plan.n)
    nr = min(plan.nr, cfg.nr_cap or plan.nr)
    out: dict[str, Any] = {"config": cfg.name, "n": n, "nr": nr, "errors": []}
    fill_mode = "bulk" if has_bulk else "single"
    try:
        enqueue_phase(peer, has_bulk, n, plan, out)
        drain_phase(peer, n, plan, out)
    except PhaseError as exc:
        out["errors"].append(f"enqueue/drain: {exc}")
    except Exception as exc:
        out["errors"].append(f"enqueue/drain: {exc!r}")
    try:
        retry_phase(peer, fill_mode, nr, plan, out)
    except PhaseError as exc:
        out["errors"].append(f"retry: {exc}")
    except Exception as exc:
        out["errors"].append(f"retry: {exc!r}")
    return out


def enqueue_phase(peer: Peer, has_bulk: bool, n: int, plan: Plan, out: dict[str, Any]) -> None:
    """Single (first ``single_n`` jobs) and bulk enqueue rates; leaves N jobs queued.

    With a bulk API: single over ``single_n`` jobs, flush, then bulk fills the queue.
    Without: single fills the queue, and its first ``single_n`` jobs give the rate."""
    count = min(plan.single_n, n)
    if has_bulk:
        peer.reset()
        out["enqueue_single"] = peer.enqueue("single", "noop", 0, count, plan.timeout)["rate"]
    peer.reset()
    before = peer.storage_bytes()
    mode = "bulk" if has_bulk else "single"
    fill = peer.enqueue(mode, "noop", 0, n, plan.timeout, mark=0 if has_bulk else count)
    out["storage_bytes_per_job"] = (peer.storage_bytes() - before) / n
    if has_bulk:
        out["enqueue_bulk"] = fill["rate"]
    else:
        out["enqueue_single"] = fill.get("mark_rate", fill["rate"])
        out["enqueue_single_fill"] = fill["rate"]
    out["enqueue_single_n"] = count


def drain_phase(peer: Peer, n: int, plan: Plan, out: dict[str, Any]) -> None:
    server = peer.server
    cmds0, cpu0 = server.commands(), server.cpu()
    t_start = time.time()
    worker = peer.start_worker("drain")
    try:
        finished = wait_until(
            lambda: int(server.client.get("bench:done") or 0) >= n, t_start + plan.timeout, worker
        )
        cmds1, cpu1 = server.commands(), server.cpu()
        done = int(server.client.get("bench:done") or 0)
    finally:
        worker.stop()
    out["drain_stop_s"] = worker.stop_seconds
    out["drain_lost"] = max(n - done, 0)
    out["drain_rss_tree_mib"] = worker.peak_tree / MIB
    out["drain_rss_largest_mib"] = worker.peak_largest / MIB
    out["redis_cmds_per_job"] = (cmds1 - cmds0) / n
    out["redis_cpu_us_per_job"] = (cpu1 - cpu0) * 1e6 / n
    if not finished:
        raise PhaseError(f"drain: {done}/{n} jobs done after {plan.timeout:.0f} s")
    first = min(float(v) for v in server.client.hvals("bench:first"))
    last = max(float(v) for v in server.client.hvals("bench:last"))
    out["drain_rate"] = (n - 1) / max(last - first, 1e-9)
    out["drain_wall"] = last - t_start


def retry_phase(peer: Peer, mode: str, nr: int, plan: Plan, out: dict[str, Any]) -> None:
    server = peer.server
    peer.reset()
    peer.enqueue("single", "noop", 0, 1, plan.timeout)  # the warm-up job
    worker = peer.start_worker("retry")
    try:
        ready = wait_until(
            lambda: int(server.client.get("bench:done") or 0) >= 1,
            time.time() + plan.timeout,
            worker,
        )
        if not ready:
            raise PhaseError(f"retry: the warm-up job did not complete in {plan.timeout:.0f} s")
        enq = peer.enqueue(mode, "flaky", 0, nr, plan.timeout)
        finished = wait_until(
            lambda: server.client.scard("bench:ok") >= nr, enq["t0"] + plan.timeout, worker
        )
        time.sleep(plan.settle)  # let duplicates, if any, show up
        ok = server.client.scard("bench:ok")
        succ = int(server.client.get("bench:succ") or 0)
        last_ok = float(server.client.get("bench:last_ok") or 0)
    finally:
        worker.stop()
    out["retry_stop_s"] = worker.stop_seconds
    out["retry_lost"] = nr - ok
    out["retry_dup"] = succ - ok
    out["retry_rss_tree_mib"] = worker.peak_tree / MIB
    if not finished:
        raise PhaseError(f"retry: {ok}/{nr} jobs succeeded after {plan.timeout:.0f} s")
    out["retry_total"] = last_ok - enq["t0"]


# -- report ----------------------------------------------------------------------------------


def machine_meta() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": psutil.virtual_memory().total / 1024**3,
        "os": os_name,
        "python": platform.python_version(),
    }


# -- main -------------------------------------------------------------------------------------


def select(only: str | None, extras: bool) -> list[Config]:
    if not only:
        return [c for c in CONFIGS if c.default or extras]
    wanted: set[str] = set()
    for token in (t.strip() for t in only.split(",") if t.strip()):
        if token in BY_NAME:
            wanted.add(token)
            continue
        family = [c.name for c in CONFIGS if c.module == f"peer_{token}"]
        if not family:
            raise SystemExit(f"unknown config {token!r}; known: {', '.join(BY_NAME)}")
        wanted.update(family)
    return [c for c in CONFIGS if c.name in wanted]


def probe_all(
    selected: Iterable[Config], server: RedisServer, workdir: Path, logdir: Path
) -> dict[str, Any]:
    probes: dict[str, Any] = {}
    for cfg in selected:
        if not (BENCH / cfg.venv / "bin" / "python").exists():
            probes[cfg.name] = {"error": f"venv bench/{cfg.venv} missing (run bench/setup.sh)"}
        else:
            try:
                probes[cfg.name] = Peer(cfg, server, workdir, logdir).call("probe", timeout=60)
            except PhaseError as exc:
                probes[cfg.name] = {"error": str(exc)}
        if "error" in probes[cfg.name]:
            log(f"{cfg.name}: unavailable: {probes[cfg.name]['error']}")
    return probes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only", help="comma-separated configs or peer families (e.g. genqueue,huey-sqlite)"
    )
    p.add_argument(
        "--extras", action="store_true", help="also run the variants that are off by default"
    )
    p.add_argument("--n", type=int, default=20_000, help="jobs per drain (default 20000)")
    p.add_argument(
        "--nr", type=int, default=2_000, help="jobs in the retry scenario (default 2000)"
    )
    p.add_argument("--single-n", type=int, default=5_000, help="jobs for the single-enqueue rate")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="bound of each phase in seconds")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait for duplicates")
    p.add_argument("--out", default=str(RESULTS / "latest"), help="output path without extension")
    p.add_argument("--render", metavar="JSON", help="only re-render the Markdown of a JSON report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        print(report.render(data), end="")
        return 0
    selected = select(args.only, args.extras)
    plan = Plan(
        n=args.n, nr=args.nr, single_n=args.single_n, timeout=args.timeout, settle=args.settle
    )
    started = dt.datetime.now().astimezone()
    logdir = RESULTS / "raw" / started.strftime("%Y%m%d-%H%M%S")
    logdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="genqueue-bench-"))
    server = RedisServer(workdir)
    log(f"redis-server {server.version} on port {server.port}; logs in {logdir}")
    runs: list[dict[str, Any]] = []
    try:
        probes = probe_all(selected, server, workdir, logdir)
        runnable = [c for c in selected if "error" not in probes[c.name]]
        for rep in range(1, args.reps + 1):
            for cfg in runnable:
                log(f"rep {rep}/{args.reps} {cfg.name} ...")
                t0 = time.time()
                peer = Peer(cfg, server, workdir, logdir / f"rep{rep}")
                peer.logdir.mkdir(exist_ok=True)
                result = run_config(peer, bool(probes[cfg.name].get("bulk")), plan)
                result["rep"] = rep
                result["seconds"] = time.time() - t0
                runs.append(result)
                with open(logdir / "runs.jsonl", "a") as f:
                    f.write(json.dumps(result) + "\n")
                log(progress_line(result))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    finished = dt.datetime.now().astimezone()
    meta = {
        **machine_meta(),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "duration_min": (finished - started).total_seconds() / 60,
        "command": " ".join(["run.py", *(argv if argv is not None else sys.argv[1:])]),
        "redis": server.version,
        "n": args.n,
        "nr": args.nr,
        "single_n": args.single_n,
        "reps": args.reps,
        "timeout": args.timeout,
        "raw_logs": str(logdir.relative_to(BENCH)),
    }
    configs = [
        {"name": c.name, "baseline": c.baseline, "file_backed": c.file_backed, "note": c.note}
        for c in selected
    ]
    data = report.build(configs, probes, runs, meta)
    text = report.render(data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(text, end="")
    log(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


def progress_line(r: dict[str, Any]) -> str:
    parts = [f"{r['config']} rep {r['rep']} ({r['seconds']:.0f} s):"]
    for key, label, digits in (
        ("enqueue_single", "single", 0),
        ("enqueue_bulk", "bulk", 0),
        ("drain_rate", "drain", 0),
        ("retry_total", "retry s", 2),
        ("drain_rss_tree_mib", "MiB", 0),
        ("redis_cmds_per_job", "cmds/job", 1),
    ):
        if key in r:
            parts.append(f"{label} {report.fmt(r[key], digits)}")
    if r.get("retry_lost") or r.get("retry_dup") or r.get("drain_lost"):
        parts.append(f"LOST {r.get('drain_lost')}/{r.get('retry_lost')} DUP {r.get('retry_dup')}")
    parts += [f"ERROR {e}" for e in r["errors"]]
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
