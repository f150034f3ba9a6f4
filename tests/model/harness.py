"""The system under test: an app on one backend, driven step by step under a fake clock.

Each hypothesis example gets a fresh ``System``: its own event loop, its own backend (a
new SQLite file, a new Redis key prefix on the session's test server or cluster, a new
PostgreSQL schema, a new memory backend) and an app configured with the policy
``model.py`` writes out. Jobs run through the worker's own code (``Worker._run_job``:
execute the task, classify what it raised, plan the outcome with the retry policy, store
it through the move batcher), but one at a time and only when a rule says so: no worker
loop, no threads, no sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import genqueue.queue
from genqueue import (
    App,
    Cancel,
    ErrorKind,
    FakeClock,
    Job,
    JobContext,
    Retry,
    RetryPolicy,
    Snooze,
    TaskError,
    Worker,
    WorkerSettings,
)
from genqueue.backends import create_backend
from genqueue.events import Event
from genqueue.running import RunningJob
from genqueue.settings import Retention
from tests.conftest import FixedRandom
from tests.model import model

T = TypeVar("T")
TASK = "model.job"
OTHER_TASK = "model.other"  # the same function, so DLQ filters by task have two to tell apart
QUEUES = ["a", "b"]
WORKER_ID = "model-worker"


@dataclass(frozen=True)
class Behaviour:
    """What the task does on one attempt."""

    action: str  # complete | fail | retry | snooze | cancel | release
    kind: ErrorKind = ErrorKind.UNKNOWN
    delay: float | None = None  # retry/snooze delay, or a failure's Retry-After
    #: Before that, report progress, add a cost of 1 usd and store a remote job id.
    report: bool = False


def remote_id(job: Job) -> str:
    return f"remote-{job.id[:8]}-{job.attempts}"


def _raise_or_return(behaviour: Behaviour) -> Any:
    if behaviour.action == "complete":
        return {"ok": True}
    if behaviour.action == "fail":
        raise TaskError("model failure", kind=behaviour.kind, retry_after=behaviour.delay)
    if behaviour.action == "retry":
        raise Retry(delay=behaviour.delay)
    if behaviour.action == "snooze":
        raise Snooze(behaviour.delay or 0.0)
    if behaviour.action == "cancel":
        raise Cancel("the model cancels it")
    raise AssertionError(behaviour)


class _Errors(logging.Handler):
    """Collects error records of genqueue's loggers (a worker logs, not raises, a failed
    store; the model must hear of it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "genqueue.events":  # events log DLQ moves as errors, by design
            self.records.append(record)


class System:
    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.clock = FakeClock()
        self.loop = asyncio.new_event_loop()
        backend = create_backend(_url(kind, directory), clock=self.clock)
        policy = RetryPolicy(
            max_retries=1,
            base_delay=model.BASE_DELAY,
            multiplier=model.MULTIPLIER,
            jitter=0.1,
            max_delay=model.MAX_DELAY,
            random=FixedRandom(0.5),  # jitter pinned at 0: delays are exact
        )
        retention = Retention(
            finished_jobs=model.FINISHED_KEEP,
            dead_letters=model.DLQ_KEEP,
            max_redrives=model.MAX_REDRIVES,
        )
        self.app = App(backend, clock=self.clock, retry=policy, retention=retention)
        self.behaviour: dict[str, Behaviour] = {}
        self.events: list[Event] = []
        self.app.events.subscribe(self.events.append)

        async def job(ctx: JobContext) -> Any:
            behaviour = self.behaviour.pop(ctx.id)
            if behaviour.report:
                ctx.progress(50, "half way")
                ctx.add_cost(usd=1.0)
                await ctx.set_remote_job_id(remote_id(ctx.job))  # raises LeaseLost
            return _raise_or_return(behaviour)

        self.app.task(TASK, queue="a")(job)
        self.app.task(OTHER_TASK, queue="b")(job)

        settings = WorkerSettings(lease_seconds=model.LEASE, integrity_check=False)
        self.worker = Worker(self.app, queues=QUEUES, settings=settings, worker_id=WORKER_ID)
        # Job ids from a counter (hashed, so they do not sort in enqueue order): a run
        # depends on nothing but hypothesis's choices, so it replays and shrinks.
        counter = itertools.count()

        def next_id() -> str:
            return hashlib.sha256(str(next(counter)).encode()).hexdigest()[:32]

        self._ids = mock.patch.object(genqueue.queue, "new_job_id", next_id)
        self._ids.start()
        self.errors = _Errors()
        logging.getLogger("genqueue").addHandler(self.errors)
        self.run(self.app.open())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        logging.getLogger("genqueue").removeHandler(self.errors)
        self._ids.stop()
        try:
            self.run(self.app.close())
        finally:
            self.loop.close()

    @property
    def now(self) -> float:
        return self.clock.now()

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.name.value == event)

    async def run_attempt(self, job: Job, behaviour: Behaviour) -> None:
        """Run one fetched job's attempt the way the worker does, and store its outcome."""
        self.behaviour[job.id] = behaviour
        running = RunningJob(job)
        # A worker shutting down releases a job it fetched but has not started.
        running.release = behaviour.action == "release"
        await self.worker._run_job(running)
        self.behaviour.pop(job.id, None)  # a discarded attempt never ran the task
        await self.worker._batcher.drain()


def _url(kind: str, directory: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{directory / f'model-{uuid.uuid4().hex}.db'}"
    if kind == "redis":
        from tests.redis_server import session_server

        return session_server().url(f"model{uuid.uuid4().hex[:16]}")
    if kind == "redis-cluster":
        from tests.redis_cluster import session_cluster

        return session_cluster().url(f"model{uuid.uuid4().hex[:16]}")
    if kind == "postgres":
        from tests.postgres_server import postgres_url_for_test

        return postgres_url_for_test("m")  # a new schema per example
    raise ValueError(kind)
