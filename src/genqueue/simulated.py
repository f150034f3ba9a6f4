"""Simulated generation: a task that fails in every way genqueue knows, on purpose.

``demo.generate`` pretends to call a paid image API. Each job's ``scenario`` says how the
call behaves: succeed, fail once with a transient error and then succeed, or fail with
an error that is never retried. Nothing touches the network, so the CLI and the queue's
failure handling can be tried (and tested) without any provider. ``run_demo`` enqueues a
mixed batch from several users, runs a worker in this process and returns a summary.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genqueue.app import App
from genqueue.classify import ErrorKind, TaskError
from genqueue.context import JobContext
from genqueue.events import Event, EventName
from genqueue.job import JobState
from genqueue.queue import JobRequest
from genqueue.retry import RetryPolicy
from genqueue.settings import WorkerSettings
from genqueue.worker import Worker

QUEUE = "demo"

#: scenario -> (error kind it raises, HTTP status, attempts that fail before success or None=always)
SCENARIOS: dict[str, tuple[ErrorKind | None, int | None, int | None]] = {
    "ok": (None, None, 0),
    "flaky_server": (ErrorKind.SERVER, 503, 1),
    "slow_network": (ErrorKind.NETWORK, None, 1),
    "read_timeout": (ErrorKind.TIMEOUT, None, 1),
    "rate_limited": (ErrorKind.RATE_LIMITED, 429, 1),
    "server_down": (ErrorKind.SERVER, 500, None),
    "bad_key": (ErrorKind.AUTH, 401, None),
    "no_credits": (ErrorKind.PAYMENT, 402, None),
    "bad_prompt": (ErrorKind.VALIDATION, 422, None),
    "remote_failed": (ErrorKind.REMOTE_FAILED, None, None),
    "bug": (ErrorKind.UNKNOWN, None, None),
}

#: How often each scenario appears in the demo batch.
MIX = {
    "ok": 60,
    "flaky_server": 8,
    "slow_network": 6,
    "read_timeout": 5,
    "rate_limited": 5,
    "server_down": 3,
    "bad_key": 3,
    "no_credits": 2,
    "bad_prompt": 4,
    "remote_failed": 2,
    "bug": 2,
}

PROMPTS = ["knight with a lance", "slime", "treasure chest", "pine tree", "wizard", "castle gate"]


async def simulated_generate(ctx: JobContext) -> dict[str, Any]:
    """A stand-in for a paid generation call."""
    data = ctx.data if isinstance(ctx.data, dict) else {}
    scenario = str(data.get("scenario", "ok"))
    kind, status, failing_attempts = SCENARIOS.get(scenario, SCENARIOS["bug"])
    rng = random.Random(f"{ctx.id}:{ctx.attempt}")
    for step in range(1, 4):
        await asyncio.sleep(rng.uniform(0.005, 0.03))
        ctx.progress(step * 30, f"rendering {data.get('prompt', 'sprite')} ({step}/3)")
    if kind is not None and (failing_attempts is None or ctx.attempt <= failing_attempts):
        _fail(kind, status, scenario)
    ctx.add_cost(usd=0.01, generations=1)
    return {"image": f"{ctx.id}.png", "prompt": data.get("prompt"), "size": data.get("size", 64)}


def _fail(kind: ErrorKind, status: int | None, scenario: str) -> None:
    if kind is ErrorKind.NETWORK:
        raise ConnectionResetError(104, "Connection reset by peer")
    if kind is ErrorKind.TIMEOUT:
        raise TimeoutError("read timed out after 30 s")
    if kind is ErrorKind.UNKNOWN:
        raise KeyError("image")  # a bug: not retried
    retry_after = 0.2 if kind is ErrorKind.RATE_LIMITED else None
    raise TaskError(
        f"simulated {scenario} (HTTP {status or '-'})",
        kind=kind,
        status=status,
        retry_after=retry_after,
    )


def register(app: App) -> None:
    app.task(
        "demo.generate",
        queue=QUEUE,
        max_retries=2,
        retry=RetryPolicy(max_retries=2, base_delay=0.2, multiplier=2.0, jitter=0.1, max_delay=2.0),
    )(simulated_generate)


def batch(count: int, seed: int = 7) -> list[JobRequest]:
    rng = random.Random(seed)
    scenarios = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [
        JobRequest(
            task="demo.generate",
            data={"scenario": s, "prompt": rng.choice(PROMPTS), "size": rng.choice([32, 64, 128])},
            user_id=f"user-{rng.randint(1, 5)}",
        )
        for s in scenarios
    ]


@dataclass
class DemoSummary:
    total: int = 0
    states: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    completed_after_retry: int = 0
    dead_by_kind: Counter[str] = field(default_factory=Counter)
    spend_usd: float = 0.0
    seconds: float = 0.0
    job_ids: list[str] = field(default_factory=list)


async def run_demo(
    app: App,
    *,
    count: int = 200,
    concurrency: int = 20,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Enqueue ``count`` simulated jobs, run a worker until all are done, summarise."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    jobs = await app.queue.enqueue_many(batch(count))
    ids = {job.id for job in jobs}
    done: set[str] = set()
    all_done = asyncio.Event()

    def track(event: Event) -> None:
        job_id = event.fields.get("job_id")
        if job_id in ids and event.name in (EventName.JOB_COMPLETED, EventName.QUEUE_DLQ_MOVE):
            done.add(str(job_id))
            if on_progress:
                on_progress(len(done), count)
            if len(done) == count:
                all_done.set()

    unsubscribe = app.events.subscribe(track)
    worker = Worker(
        app,
        queues=[QUEUE],
        settings=WorkerSettings(concurrency=concurrency, poll_interval=0.05, lease_seconds=30),
    )
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.wait(
            [runner, asyncio.ensure_future(all_done.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        worker.request_stop()
        await runner
        unsubscribe()
    summary = await summarise(app, [job.id for job in jobs])
    summary.seconds = loop.time() - started
    return summary


async def summarise(app: App, job_ids: list[str]) -> DemoSummary:
    summary = DemoSummary(total=len(job_ids), job_ids=job_ids)
    for job_id in job_ids:
        job = await app.backend.get(job_id)
        if job is None:
            summary.states["missing"] += 1
            continue
        summary.states[job.state.value] += 1
        if job.retry_count:
            summary.retried += 1
            if job.state is JobState.COMPLETED:
                summary.completed_after_retry += 1
        if job.state is JobState.DEAD and job.last_error:
            summary.dead_by_kind[job.last_error.kind.value] += 1
        summary.spend_usd += job.cost.get("usd", 0.0)
    return summary
