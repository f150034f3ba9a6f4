"""Helpers for the conformance suite: event capture and bulk dead-letter setup."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from genqueue import App, ClassifiedError, ErrorKind, Event, JobRequest
from genqueue.backends.base import Move
from genqueue.entry import DeadLetter
from genqueue.job import Attempt, AttemptOutcome, JobState


class Recorder:
    def __init__(self, app: App) -> None:
        self.events: list[Event] = []
        app.events.subscribe(self.events.append)

    def names(self) -> list[str]:
        return [e.name.value for e in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [dict(e.fields) for e in self.events if e.name.value == name]


async def make_dead(
    app: App,
    count: int,
    *,
    task: str = "t",
    user_id: str | None = "u1",
    kind: ErrorKind = ErrorKind.SERVER,
    message: str = "upstream 500",
    data: Any = None,
    step: float = 1.0,
    offset: float = 0.0,
    queue: str = "dlqtest",
    stack: str = "Traceback...",
    retention: float | None = None,
) -> list[str]:
    """Create ``count`` dead jobs through the backend primitives (fast, any backend);
    ``retention``: the dead-letter retention they are stored with (default the app's)."""
    keep = app.retention.dead_letters if retention is None else retention
    backend = app.backend
    if task not in app.tasks:
        app.task(task, queue="dlqtest")(_never_runs)
    ids: list[str] = []
    for start in range(0, count, 500):
        n = min(500, count - start)
        requests = [
            JobRequest(
                task=task,
                data=data if data is not None else {"i": start + i},
                user_id=user_id,
                queue=queue,
            )
            for i in range(n)
        ]
        jobs = await app.queue.enqueue_many(requests)
        claimed = await backend.fetch([queue], "ghost", n, 30)
        assert len(claimed) == n
        moves = []
        for i, job in enumerate(claimed):
            now = await backend.time() + offset + (start + i) * step
            error = ClassifiedError(
                kind=kind,
                retryable=False,
                message=message,
                type="RuntimeError",
                stack=stack,
            )
            attempt = Attempt(job.attempts, now, now, "ghost", AttemptOutcome.DEAD, error=error)
            dead = replace(
                job,
                state=JobState.DEAD,
                history=[*job.history, attempt],
                last_error=error,
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            entry = DeadLetter(dead, "test failure", kind, now, error.fingerprint, now + keep)
            moves.append(Move(dead, JobState.ACTIVE, job.attempts, entry))
        assert all(await backend.move(moves))
        ids += [j.id for j in jobs]
    return ids


async def _never_runs(ctx: Any) -> None:
    raise AssertionError("make_dead jobs are never run")


def completing(claimed: list[Any], now: float) -> list[Move]:
    """The moves that complete ``claimed`` jobs (fetched, so active) at ``now``."""
    return [
        Move(
            replace(job, state=JobState.COMPLETED, finished_at=now, updated_at=now),
            expect_state=JobState.ACTIVE,
            expect_token=job.attempts,
        )
        for job in claimed
    ]
