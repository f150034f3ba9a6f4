"""Charges under chaos: accept-then-fail faults and SIGKILLed workers never pay twice.

Real worker processes run a few hundred PixelLab jobs (sync and async) against the fake,
which accepts and bills some submits and then answers 500 or drops the connection, while
the test kills workers at random and starts new ones. The fake's own ledger is the judge:
no job is charged twice, every job ends completed or dead-lettered, and what was charged
is on the jobs' costs or counted as charged for a lost submit.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, JobRequest, JobState
from genqueue.providers.fake_pixellab import (
    FakeOptions,
    FakePixelLab,
    accept_then_fail,
    gateway_fault,
)
from genqueue.providers.guard import all_guard_states
from genqueue.stats import spend_report
from tests.chaos.conftest import Workers

pytestmark = pytest.mark.slow
KEY = "sk-chaos-charges-31f4"
SYNC = {"operation": "create-image-pixflux",
        "params": {"description": "a slime", "image_size": {"width": 32, "height": 32}}}  # fmt: skip
ASYNC = {"operation": "generate-image-v2",
         "params": {"description": "a slime", "image_size": {"width": 176, "height": 176}}}  # fmt: skip


def faults(fake: FakePixelLab) -> None:
    for seed, (fault, chance) in enumerate([
        (accept_then_fail(status=500), 0.04),
        (accept_then_fail(status=502, text="<html>502 Bad Gateway</html>"), 0.02),
        (accept_then_fail(drop=True), 0.04),
        (gateway_fault(503), 0.04),
    ]):  # fmt: skip
        fake.add_fault("POST /v2/*", fault, times=None, probability=chance, seed=seed)


async def enqueue(url: str, sync: int, asynchronous: int) -> list[str]:
    requests = [JobRequest("pixellab.generate", SYNC, queue="pixellab") for _ in range(sync)]
    requests += [
        JobRequest("pixellab.generate", ASYNC, queue="pixellab") for _ in range(asynchronous)
    ]
    async with App(url, strict_tasks=False) as app:
        return [job.id for job in await app.queue.enqueue_many(requests)]


async def outcome(url: str, ids: list[str]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    async with App(url, strict_tasks=False) as app:
        jobs = [await app.get(i) for i in ids]
        return jobs, await spend_report(app), (await all_guard_states(app))[0]["ledger"]


async def unfinished(url: str, ids: list[str]) -> int:
    """Jobs not finished, plus submits the ledger has not decided: a job that died with
    its submit uncertain leaves it to the workers' tending, and spend is only whole after."""
    async with App(url, strict_tasks=False) as app:
        states = [(await app.get(i)).state for i in ids]
        guards = await all_guard_states(app)
    ledger = guards[0]["ledger"] if guards else {}
    undecided = ledger.get("undecided", 0) + ledger.get("in_flight", 0)
    return sum(s not in (JobState.COMPLETED, JobState.DEAD) for s in states) + undecided


@pytest.mark.timeout(400)  # about a minute alone; more on a busy 2-core machine
def test_killed_workers_and_accept_then_fail_never_charge_a_job_twice(
    workers: Workers, tmp_path: Path
) -> None:
    options = FakeOptions(
        tokens={KEY: "main"},
        sync_latency=(0.01, 0.05),
        complete_after_polls=(2, 4),
        max_concurrent_jobs=6,
        settlement_lag=(0.0, 0.3),
    )
    rng = random.Random(7)
    with FakePixelLab(options) as fake:
        faults(fake)
        workers.extra_env = {
            "PIXELLAB_BASE_URL": fake.base_url,
            "PIXELLAB_API_KEY": KEY,
            "GENQUEUE_OUTPUT_DIR": str(tmp_path / "out"),
        }
        ids = asyncio.run(enqueue(workers.url, sync=200, asynchronous=60))
        pool = [workers.start("-q", "pixellab", "-c", "8") for _ in range(3)]
        kills = 0
        deadline = time.monotonic() + 240  # a loaded 2-core machine needs the room
        while asyncio.run(unfinished(workers.url, ids)) and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 1.5))
            if kills < 8:
                victim = pool.pop(rng.randrange(len(pool)))
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                kills += 1
                pool.append(workers.start("-q", "pixellab", "-c", "8"))
        stats = fake.stats()
    jobs, spend, ledger = asyncio.run(outcome(workers.url, ids))
    states = [job.state for job in jobs]
    assert set(states) <= {JobState.COMPLETED, JobState.DEAD}, "every job finished"
    assert kills == 8 and stats["faults_fired"].get("accept_then_fail", 0) >= 5
    # The fake's own ledger: no job was charged twice (no blind resends by default).
    charges = stats["charges_by_client_job"]
    assert stats["charges"] == len(charges)
    assert {job for job, n in charges.items() if n > 1} == set()
    assert ledger["blind_resubmits"] == 0
    # Most jobs complete; the rest are dead-lettered with what happened to them.
    assert states.count(JobState.COMPLETED) >= 0.8 * len(ids)
    # What PixelLab charged is on the jobs' costs or counted as charged for a lost submit.
    unattributed = ledger["unexplained"].get("usd", 0.0) - ledger["attributed"].get("usd", 0.0)
    assert spend["spent"]["usd"] + unattributed == pytest.approx(stats["total_charged_usd"]), (
        mismatches(stats, jobs, ledger)
    )


def mismatches(stats: dict[str, Any], jobs: list[Any], ledger: dict[str, Any]) -> str:
    """What to look at when spend and the fake's ledger disagree: each job whose charges at
    the fake differ from the cost it carries, with its history, and the submit ledger."""
    charged: dict[str, float] = {}
    for charge in stats["ledger"]:
        key = str(charge["client_job_id"])
        charged[key] = charged.get(key, 0.0) + charge["usd"]
    lines = []
    for job in jobs:
        on_job = job.cost.get("usd", 0.0)
        if abs(charged.get(job.id, 0.0) - on_job) > 1e-9:
            history = [
                (a.number, a.outcome.value, a.error.kind.value if a.error else None, a.details)
                for a in job.history
            ]
            lines.append(
                f"{job.id} {job.state.value} fake charged {charged.get(job.id, 0.0)} job cost "
                f"{on_job} meta={job.meta} remote={job.remote_job_id} history={history}"
            )
    return "\n".join([*lines, f"ledger={ledger}"])
