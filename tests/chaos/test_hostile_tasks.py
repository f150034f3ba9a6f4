"""Real worker processes running hostile tasks: no task takes its worker down.

Tasks raising SystemExit, KeyboardInterrupt, GeneratorExit, other BaseExceptions or
CancelledError fail on their own (never ``worker_lost``, never "completed") while the
innocent jobs around them complete; a sync task past its timeout or past the shutdown
grace period is never run twice at once; a task blocking the event loop is named.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, JobRequest, JobState
from tests.chaos.conftest import ROOT, Workers, wait_until

pytestmark = pytest.mark.slow


class HostileWorkers(Workers):
    """Worker processes of the hostile app; stdout and stderr go to files."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        super().__init__(url, tmp_path / "ledger.txt")
        self.tmp_path = tmp_path

    def start(self, *args: str, lease: float = 1) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        cmd = [
            sys.executable, "-m", "genqueue.cli.main", "worker",
            "--app", "tests.chaos.hostile_app:app", "--lease", str(lease), "--grace", "1",
            "--log-level", "warning", *args,
        ]  # fmt: skip
        with (
            open(self.tmp_path / f"stdout{n}.txt", "wb") as out,
            open(self.tmp_path / f"stderr{n}.txt", "wb") as err,
        ):
            proc = subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdout=out, stderr=err)
        self.procs.append(proc)
        return proc

    def output(self, n: int = 0) -> tuple[str, str]:
        """What worker ``n`` printed (stdout) and logged (stderr)."""
        read = (self.tmp_path / f"{name}{n}.txt" for name in ("stdout", "stderr"))
        out, err = (path.read_text(errors="replace") for path in read)
        return out, err

    def starts(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines()]


@pytest.fixture
def hostile(workers: Workers, tmp_path: Path) -> Iterator[HostileWorkers]:
    pool = HostileWorkers(workers.url, tmp_path)
    yield pool
    pool.stop_all()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def app_for(pool: Workers) -> App:
    from tests.chaos.hostile_app import app as hostile_app

    app = App(pool.url)
    for task in hostile_app.tasks:
        app.tasks.add(task)
    return app


def enqueue(pool: Workers, requests: list[JobRequest]) -> list[str]:
    async def go() -> list[str]:
        async with app_for(pool) as app:
            return [j.id for j in await app.queue.enqueue_many(requests)]

    return run(go())


def states(pool: Workers, ids: list[str]) -> list[JobState]:
    async def go() -> list[JobState]:
        async with app_for(pool) as app:
            return [(await app.get(i)).state for i in ids]

    return run(go())


def history(pool: Workers, job_id: str) -> list[str]:
    async def go() -> list[str]:
        async with app_for(pool) as app:
            job = await app.get(job_id)
            return [a.error.kind.value if a.error else a.outcome.value for a in job.history]

    return run(go())


def dead_letters(pool: Workers, ids: list[str]) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        async with app_for(pool) as app:
            entries = [await app.dlq.get(i) for i in ids]
            return [(e.error_kind.value, e.job.last_error.message) for e in entries]  # type: ignore[union-attr]

    return run(go())


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def test_hostile_tasks_fail_alone_and_the_worker_lives_on(hostile: HostileWorkers) -> None:
    hostile_tasks = ["hostile.exit", "hostile.interrupt", "hostile.generator_exit", "hostile.base"]
    requests = []
    for name in hostile_tasks:
        requests += [JobRequest("hostile.sleep", {"seconds": 0.3}), JobRequest(name, {})]
    requests.append(JobRequest("hostile.sleep", {"seconds": 0.3}))
    ids = enqueue(hostile, requests)
    bad, good = ids[1::2], ids[0::2]
    proc = hostile.start("--concurrency", "4")
    wait_until(
        lambda: states(hostile, ids).count(JobState.DEAD) == 4 and len(hostile.lines("done")) == 5,
        30,
        "the hostile jobs to be dead and the innocent ones done",
    )
    assert proc.poll() is None  # still working
    assert states(hostile, good) == [JobState.COMPLETED] * 5
    assert dead_letters(hostile, bad) == [
        ("unknown", "task raised SystemExit: 3"),
        ("unknown", "task raised KeyboardInterrupt"),
        ("unknown", "task raised GeneratorExit"),
        ("unknown", "task raised Hostile: a BaseException from a thread"),
    ]
    for job_id in bad:
        assert history(hostile, job_id) == ["unknown"]  # one attempt, never worker_lost
    # It still does work, and a real SIGTERM still stops it gracefully.
    [late] = enqueue(hostile, [JobRequest("hostile.sleep", {"seconds": 0.1})])
    wait_until(lambda: states(hostile, [late]) == [JobState.COMPLETED], 20, "a later job")
    assert stop(proc) == 0
    out, _ = hostile.output()
    assert out.splitlines()[-1] == "worker stopped: completed 6, dead 4"


def test_a_tasks_own_cancelled_error_is_its_failure(hostile: HostileWorkers) -> None:
    cancelled, timed_out, good = enqueue(
        hostile,
        [
            JobRequest("hostile.cancelled", {}),
            JobRequest("hostile.async_timeout", {}),
            JobRequest("hostile.sleep", {"seconds": 0.1}),
        ],
    )
    proc = hostile.start("--concurrency", "4")
    wait_until(
        lambda: (
            states(hostile, [cancelled, timed_out, good])
            == [JobState.DEAD, JobState.DEAD, JobState.COMPLETED]
        ),
        30,
        "the jobs to end",
    )
    assert dead_letters(hostile, [cancelled, timed_out]) == [
        ("unknown", "task raised CancelledError, but the worker did not cancel it"),
        ("timeout", "task hostile.async_timeout timed out after 0.3 s"),
    ]
    assert history(hostile, cancelled) == ["unknown"]
    assert stop(proc) == 0
    out, _ = hostile.output()
    assert out.splitlines()[-1] == "worker stopped: completed 1, dead 2"


def _attempts(pool: HostileWorkers, job_id: str) -> list[tuple[str, int, int]]:
    """The ledger of one job: (start|done, attempt, copies running at start)."""
    return [
        (line[0], int(line[2]), int(line[3]) if line[0] == "start" else 0)
        for line in pool.starts()
        if line[1] == job_id
    ]


def test_a_sync_task_past_its_timeout_never_runs_twice_at_once(hostile: HostileWorkers) -> None:
    [job_id] = enqueue(hostile, [JobRequest("hostile.sync_timeout", {"seconds": 1.0})])
    proc = hostile.start("--concurrency", "4")
    wait_until(lambda: states(hostile, [job_id]) == [JobState.DEAD], 30, "the job to die")
    # max_retries=2: three attempts, each started after the previous copy returned.
    assert _attempts(hostile, job_id) == [
        ("start", 1, 1),
        ("done", 1, 0),
        ("start", 2, 1),
        ("done", 2, 0),
        ("start", 3, 1),
        ("done", 3, 0),
    ]
    assert history(hostile, job_id) == ["timeout"] * 3
    assert stop(proc) == 0
    _, err = hostile.output()
    overruns = [line for line in err.splitlines() if "attempt_overrun" in line]
    assert len(overruns) == 3 and all(f"job_id={job_id}" in line for line in overruns)
    assert all("reason=timeout" in line for line in overruns)


def test_sigterm_waits_for_a_sync_task_past_the_grace_period(hostile: HostileWorkers) -> None:
    [job_id] = enqueue(hostile, [JobRequest("hostile.sync_sleep", {"seconds": 3})])
    proc = hostile.start()
    wait_until(lambda: len(hostile.starts()) == 1, 20, "the job to start")
    proc.send_signal(signal.SIGTERM)
    time.sleep(2)  # the 1 s grace period and the 1 s lease are over
    assert proc.poll() is None
    assert states(hostile, [job_id]) == [JobState.ACTIVE]  # not released while it runs
    assert proc.wait(timeout=20) == 0
    assert states(hostile, [job_id]) == [JobState.COMPLETED]
    assert _attempts(hostile, job_id) == [("start", 1, 1), ("done", 1, 0)]
    _, err = hostile.output()
    [overrun] = [line for line in err.splitlines() if "attempt_overrun" in line]
    assert f"job_id={job_id}" in overrun and "reason=shutdown" in overrun


def test_a_second_signal_exits_and_the_job_is_reclaimed(hostile: HostileWorkers) -> None:
    [job_id] = enqueue(hostile, [JobRequest("hostile.sync_sleep", {"seconds": 60})])
    proc = hostile.start()
    wait_until(lambda: len(hostile.starts()) == 1, 20, "the job to start")
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the grace period: the worker waits for the thread
    assert proc.poll() is None and states(hostile, [job_id]) == [JobState.ACTIVE]
    began = time.monotonic()
    assert stop(proc, timeout=10) == 0  # the second signal: the thread dies with the process
    assert time.monotonic() - began < 5
    assert states(hostile, [job_id]) == [JobState.ACTIVE]  # not released: nothing written
    hostile.start()  # reclaims it once the lease expired; the retry runs
    wait_until(lambda: len(hostile.starts()) == 2, 30, "the job to be retried")
    assert history(hostile, job_id) == ["worker_lost"]


def test_a_task_that_blocks_the_event_loop_is_named(hostile: HostileWorkers) -> None:
    [job_id] = enqueue(hostile, [JobRequest("hostile.blocker", {"seconds": 1.6})])
    proc = hostile.start("--burst", lease=10)
    assert proc.wait(timeout=30) == 0
    assert states(hostile, [job_id]) == [JobState.COMPLETED]
    _, err = hostile.output()
    [warning] = [line for line in err.splitlines() if "event loop blocked" in line]
    assert "genqueue.worker" in warning and job_id in warning and "hostile.blocker" in warning
    [event] = [line for line in err.splitlines() if "loop_blocked" in line]
    assert f"job_id={job_id}" in event
