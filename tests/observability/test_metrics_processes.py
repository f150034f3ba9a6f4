"""/metrics of two real worker processes sharing one backend (SQLite file, Redis server).

Counters are per process (Prometheus adds the scrape targets up); gauges are read from
the backend, so both processes report the same values.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from genqueue import App, JobRequest, JobState
from tests.conftest import BACKENDS, backend_url
from tests.observability.test_metrics import Samples, scrape, value
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=[b for b in BACKENDS if b in ("sqlite", "redis")])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(str(request.param), tmp_path)


@pytest.fixture
def start_worker(url: str) -> Iterator[Callable[[], int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        port = free_port()
        cmd = [
            sys.executable, "-m", "genqueue.cli.main", "worker",
            "--app", "tests.observability.metrics_app:app", "--metrics-port", str(port),
            "--log-level", "warning", "--concurrency", "4",
        ]  # fmt: skip
        env = {**os.environ, "GENQUEUE_BACKEND": url, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL))
        return port

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass  # the endpoint is not up yet
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def get(port: int) -> Samples:
    return scrape(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def test_two_workers_scripted_run(url: str, start_worker: Callable[[], int]) -> None:
    ports = [start_worker(), start_worker()]
    eventually(lambda: all(value(get(p), "genqueue_workers") == 2 for p in ports), "2 workers")
    n, m, k = 12, 5, 3
    requests = (
        [JobRequest("ok", {"i": i}) for i in range(n)]
        + [JobRequest("flaky", {"i": i}) for i in range(m)]
        + [JobRequest("bad", {"i": i}) for i in range(k)]
    )
    ids = asyncio.run(_enqueue(url, requests))

    def finished() -> bool:
        states = asyncio.run(_states(url, ids))
        return all(s in (JobState.COMPLETED, JobState.DEAD) for s in states)

    eventually(finished, "every job to finish")

    def total(name: str, **labels: str) -> float:
        return sum(value(get(p), name, **labels) for p in ports)

    # Counters: each process counts its own work; together they count everything.
    assert total("genqueue_jobs_started_total") == n + 2 * m + k
    assert total("genqueue_jobs_succeeded_total") == n + m
    assert total("genqueue_jobs_retried_total") == m
    assert total("genqueue_jobs_failed_total", error_kind="server") == m
    assert total("genqueue_jobs_dead_lettered_total", reason="non_retryable") == k
    assert round(total("genqueue_spend_total", unit="usd"), 6) == round(0.01 * n, 6)
    # Gauges: read from the backend, the same in both processes once refreshed.
    for port in ports:
        eventually(
            lambda port=port: value(get(port), "genqueue_queue_jobs", state="completed") == n + m,
            "the gauges to refresh",
        )
        samples = get(port)
        assert value(samples, "genqueue_queue_jobs", queue="m", state="dead") == k
        assert value(samples, "genqueue_queue_jobs", queue="m", state="queued") == 0
        assert value(samples, "genqueue_workers", queue="m") == 2
        assert value(samples, "genqueue_worker_slots") == 8


async def _enqueue(url: str, requests: list[JobRequest]) -> list[str]:
    from tests.observability.metrics_app import app

    app.use_backend(url)  # the producer knows the tasks; the workers import the same app
    async with app:
        return [job.id for job in await app.queue.enqueue_many(requests)]


async def _states(url: str, ids: list[str]) -> list[JobState]:
    async with App(url) as app:
        return [(await app.get(i)).state for i in ids]
