"""The demo: a few hundred PixelLab generation jobs through genqueue, against the fake.

``run`` enqueues jobs from several users (sync pixel art, async Pro images, rotations and
characters), runs workers in this process until every job is completed or dead, and
returns a ``DemoReport`` that accounts for every job: what completed, what was retried,
what resumed a remote job instead of paying again, what waited on rate limits, what was
dead-lettered and why, and the spend (with what was wasted).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genqueue.app import App
from genqueue.events import Event, EventName
from genqueue.job import JobState, wasted_cost
from genqueue.providers.pixellab.task import TASK, PixelLab
from genqueue.queue import JobRequest
from genqueue.settings import WorkerSettings
from genqueue.worker import Worker

SUBJECTS = [
    "knight with a lance",
    "green slime",
    "treasure chest",
    "pine tree",
    "old wizard",
    "castle gate",
    "fire imp",
    "wooden shield",
]

# operation, share of the batch, params factory
MIX: list[tuple[str, float, Callable[[random.Random, str], dict[str, Any]]]] = [
    (
        "create-image-pixflux",
        0.55,
        lambda r, s: {"description": s, "image_size": _square(r, (32, 48, 64))},
    ),
    (
        "create-image-bitforge",
        0.15,
        lambda r, s: {"description": s, "image_size": _square(r, (32, 64))},
    ),
    (
        "generate-image-v2",
        0.15,
        lambda r, s: {"description": s, "image_size": _square(r, (128, 176))},
    ),
    (
        "generate-8-rotations-v3",
        0.08,
        lambda r, s: {"description": s, "image_size": _square(r, (32, 48))},
    ),
    (
        "create-character-with-4-directions",
        0.07,
        lambda r, s: {"description": s, "image_size": _square(r, (48, 64))},
    ),
]
REAL_MIX = MIX[:1]  # against the real API: only small, cheap sync images


def _square(rng: random.Random, sizes: tuple[int, ...]) -> dict[str, int]:
    side = rng.choice(sizes)
    return {"width": side, "height": side}


def batch(count: int, *, seed: int = 7, real: bool = False) -> list[JobRequest]:
    rng = random.Random(seed)
    mix = REAL_MIX if real else MIX
    operations = rng.choices([m[0] for m in mix], weights=[m[1] for m in mix], k=count)
    factories = {m[0]: m[2] for m in mix}
    requests = []
    for operation in operations:
        subject = rng.choice(SUBJECTS)
        requests.append(
            JobRequest(
                task=TASK,
                data={"operation": operation, "params": factories[operation](rng, subject)},
                user_id=f"user-{rng.randint(1, 6)}",
            )
        )
    return requests


@dataclass
class DemoReport:
    total: int = 0
    states: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    completed_after_retry: int = 0
    resumed: int = 0
    rate_limited: int = 0
    uncertain_resubmits: int = 0
    #: Jobs sent again after the account balance proved a lost submit was not charged.
    reconciled: int = 0
    #: Failed attempts that may have been billed although no result came back.
    maybe_billed: int = 0
    dead_by_kind: Counter[str] = field(default_factory=Counter)
    images: int = 0
    spent: dict[str, float] = field(default_factory=dict)
    wasted: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    output_dir: str = ""
    provider: dict[str, Any] = field(default_factory=dict)

    @property
    def accounted(self) -> bool:
        return sum(self.states.values()) == self.total


async def run(
    app: App,
    pixellab: PixelLab,
    requests: list[JobRequest],
    *,
    workers: int = 2,
    concurrency: int = 12,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoReport:
    """Enqueue ``requests`` and run ``workers`` workers until every job is finished."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    jobs = await app.queue.enqueue_many(requests)
    ids = {job.id for job in jobs}
    finished: set[str] = set()
    all_done = asyncio.Event()

    def track(event: Event) -> None:
        job_id = event.fields.get("job_id")
        if job_id in ids and event.name in (EventName.JOB_COMPLETED, EventName.QUEUE_DLQ_MOVE):
            finished.add(str(job_id))
            if on_progress:
                on_progress(len(finished), len(ids))
            if len(finished) == len(ids):
                all_done.set()

    unsubscribe = app.events.subscribe(track)
    settings = WorkerSettings(concurrency=concurrency, poll_interval=0.05, lease_seconds=30)
    pool = [
        Worker(app, queues=[pixellab.settings.queue], settings=settings) for _ in range(workers)
    ]
    runners = [asyncio.create_task(w.run()) for w in pool]
    try:
        await asyncio.wait(
            [*runners, asyncio.ensure_future(all_done.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for worker in pool:
            worker.request_stop()
        await asyncio.gather(*runners)
        unsubscribe()
    report = await summarise(app, [job.id for job in jobs])
    report.seconds = loop.time() - started
    report.output_dir = str(pixellab.settings.resolved_output())
    return report


async def summarise(app: App, job_ids: list[str]) -> DemoReport:
    report = DemoReport(total=len(job_ids))
    for job_id in job_ids:
        job = await app.backend.get(job_id)
        if job is None:
            report.states["missing"] += 1
            continue
        report.states[job.state.value] += 1
        if job.retry_count:
            report.retried += 1
            report.completed_after_retry += job.state is JobState.COMPLETED
        report.resumed += bool(job.meta.get("resumed"))
        report.rate_limited += bool(job.meta.get("rate_limit_waits"))
        report.uncertain_resubmits += bool(job.meta.get("uncertain_resubmits"))
        report.reconciled += bool(job.meta.get("reconciled"))
        report.maybe_billed += sum(
            1 for a in job.history if a.error and a.error.details.get("maybe_charged")
        )
        if job.state is JobState.DEAD and job.last_error is not None:
            report.dead_by_kind[job.last_error.kind.value] += 1
        if job.state is JobState.COMPLETED and isinstance(job.result, dict):
            report.images += len(job.result.get("images") or [])
        for unit, amount in job.cost.items():
            report.spent[unit] = round(report.spent.get(unit, 0.0) + amount, 6)
        for unit, amount in wasted_cost(job).items():
            report.wasted[unit] = round(report.wasted.get(unit, 0.0) + amount, 6)
    return report
