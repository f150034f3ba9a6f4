"""Real worker processes killed with SIGKILL: jobs are recovered, never lost or looped."""

from __future__ import annotations

import asyncio
import signal

import pytest

from genqueue import App, JobRequest, JobState
from tests.chaos.conftest import Workers, wait_until

pytestmark = pytest.mark.slow


def app_for(workers: Workers) -> App:
    from tests.chaos.chaos_app import app as chaos_app

    app = App(workers.url)
    for task in chaos_app.tasks:
        app.tasks.add(task)
    return app


def job_state(workers: Workers, job_id: str) -> JobState:
    async def read() -> JobState:
        async with app_for(workers) as app:
            return (await app.get(job_id)).state

    return asyncio.run(read())


def enqueue(workers: Workers, requests: list[JobRequest]) -> list[str]:
    async def go() -> list[str]:
        async with app_for(workers) as app:
            return [j.id for j in await app.queue.enqueue_many(requests)]

    return asyncio.run(go())


def test_killed_worker_job_is_recovered_and_completes_once(workers: Workers) -> None:
    [job_id] = enqueue(workers, [JobRequest("chaos.sleep", {"seconds": 1.5})])
    first = workers.start()
    wait_until(lambda: workers.lines("start")[job_id] == 1, 20, "the job to start")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    workers.start()  # a new worker reclaims the job once its 1 s lease expires
    wait_until(lambda: job_state(workers, job_id) is JobState.COMPLETED, 30, "the job to complete")
    assert workers.lines("done")[job_id] == 1
    assert workers.lines("start")[job_id] == 2

    async def history() -> list[str]:
        async with app_for(workers) as app:
            job = await app.get(job_id)
            return [a.error.kind.value if a.error else a.outcome.value for a in job.history]

    assert asyncio.run(history()) == ["worker_lost", "completed"]


def test_job_that_kills_its_worker_every_time_ends_in_the_dlq(workers: Workers) -> None:
    [job_id] = enqueue(workers, [JobRequest("chaos.poison", {})])

    def dead() -> bool:
        if job_state(workers, job_id) is JobState.DEAD:
            return True
        if all(p.poll() is not None for p in workers.procs):
            workers.start()  # a supervisor restarts the crashed worker
        return False

    wait_until(dead, 60, "the poison job to be dead-lettered")
    assert workers.lines("start")[job_id] == 2  # max_retries=1: two attempts, no loop

    async def entry() -> tuple[str, str]:
        async with app_for(workers) as app:
            found = await app.dlq.get(job_id)
            return found.error_kind.value, found.reason

    kind, reason = asyncio.run(entry())
    assert kind == "worker_lost" and reason.startswith("retries exhausted")


def test_two_worker_processes_on_one_backend_run_each_job_once(workers: Workers) -> None:
    ids = enqueue(workers, [JobRequest("chaos.count", {"i": i}) for i in range(2000)])
    procs = [workers.start("--burst", "--concurrency", "20") for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    done = workers.lines("done")
    assert len(done) == 2000 and set(done) == set(ids)
    assert max(done.values()) == 1  # each exactly once
    pids = {line.split()[3] for line in workers.ledger.read_text().splitlines()}
    assert len(pids) == 2  # both processes did work

    async def states() -> dict[str, int]:
        async with app_for(workers) as app:
            counts = await app.backend.counts()
            return counts["default"]

    assert asyncio.run(states()) == {"completed": 2000}


def test_sigterm_lets_running_jobs_finish_then_releases_the_rest(workers: Workers) -> None:
    quick, slow = enqueue(
        workers,
        [JobRequest("chaos.sleep", {"seconds": 0.5}), JobRequest("chaos.sleep", {"seconds": 30})],
    )
    proc = workers.start("--concurrency", "2")
    wait_until(lambda: len(workers.lines("start")) == 2, 20, "both jobs to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0  # grace is 1 s: the slow job is released, not awaited
    assert job_state(workers, quick) is JobState.COMPLETED
    assert job_state(workers, slow) is JobState.QUEUED
    assert workers.lines("done")[slow] == 0
