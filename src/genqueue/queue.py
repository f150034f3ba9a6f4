"""Producer operations: enqueue (one or a batch), get, list, cancel, and wait for a result.

Input is validated here, once, for every backend: a bad request raises ``InvalidInput``
naming the field, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from genqueue.backends.base import JobQuery, Move
from genqueue.choices import parse_choices
from genqueue.entry import Page
from genqueue.errors import (
    IllegalTransition,
    InvalidInput,
    JobFailed,
    JobGone,
    JobNotFound,
    StateError,
    WaitTimeout,
)
from genqueue.events import EventName
from genqueue.job import CANCELLABLE_STATES, Job, JobState, check_job_id, new_job_id
from genqueue.retry import check_max_retries
from genqueue.serialization import check_json
from genqueue.task import Task, check_queue_name

if TYPE_CHECKING:
    from genqueue.app import App

MAX_DELAY = 366 * 24 * 3600.0
MAX_BATCH = 10_000
MAX_PAGE = 1000
_MAX_TEXT = 200


@dataclass(frozen=True)
class JobRequest:
    """One job to enqueue; see ``Queue.enqueue`` for the fields."""

    task: str
    data: Any = None
    queue: str | None = None
    delay: float | None = None
    run_at: float | None = None
    user_id: str | None = None
    idempotency_key: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    #: Extra JSON kept in the job's ``meta`` (the HTTP API records ``submitted_by``).
    meta: Mapping[str, Any] | None = None


def _check_text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise InvalidInput(
            f"{field} must be a non-empty string of at most {_MAX_TEXT} characters", field=field
        )
    return value


def _check_seconds(value: float | None, field: str, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{field} must be a finite number of seconds", field=field)
    if value < 0 or (positive and value == 0):
        raise InvalidInput(
            f"{field} must be {'> 0' if positive else '>= 0'}, got {value}", field=field
        )
    if value > MAX_DELAY:
        raise InvalidInput(f"{field} must be at most {MAX_DELAY:.0f} seconds (a year)", field=field)
    return float(value)


class Queue:
    """Producer facade over the app's backend."""

    def __init__(self, app: App) -> None:
        self.app = app

    # -- enqueue ------------------------------------------------------------------------

    def build(self, request: JobRequest, now: float) -> Job:
        """Validate a request and build the job it describes (nothing is stored)."""
        task = self._task(request.task)
        queue = check_queue_name(request.queue or (task.options.queue if task else "default"))
        delay = _check_seconds(request.delay, "delay")
        if request.run_at is not None and (
            isinstance(request.run_at, bool)
            or not isinstance(request.run_at, int | float)
            or not math.isfinite(request.run_at)
        ):
            raise InvalidInput("run_at must be an epoch time in seconds", field="run_at")
        if delay is not None and request.run_at is not None:
            raise InvalidInput("give delay or run_at, not both", field="delay")
        max_retries = request.max_retries
        if max_retries is None:
            max_retries = self.app.policy_for(request.task, queue).max_retries
        check_max_retries(max_retries)
        data = task.validate_data(request.data) if task is not None else request.data
        check_json(data, field="data")
        run_at = request.run_at if request.run_at is not None else now + (delay or 0.0)
        timeout = _check_seconds(request.timeout, "timeout", positive=True)
        return Job(
            id=new_job_id(),
            task=request.task,
            queue=queue,
            data=data,
            user_id=_check_text(request.user_id, "user_id"),
            idempotency_key=_check_text(request.idempotency_key, "idempotency_key"),
            state=JobState.SCHEDULED if run_at > now else JobState.QUEUED,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            max_retries=max_retries,
            timeout=timeout if timeout is not None else (task.options.timeout if task else None),
            meta=dict(request.meta or {}),
        )

    def _task(self, name: str) -> Task | None:
        if not isinstance(name, str) or not name:
            raise InvalidInput("task must be a task name", field="task")
        if self.app.strict_tasks:
            return self.app.tasks.get(name)  # raises UnknownTask
        return self.app.tasks.find(name)

    async def enqueue(
        self, task: str | Task, data: Any = None, *, connection: Any = None, **options: Any
    ) -> Job:
        """Enqueue one job. Options: queue, delay, run_at, user_id, idempotency_key,
        max_retries, timeout. Returns the stored job: the existing one when a pending job
        of the queue holds the idempotency key with the same data; with other data it
        raises ``IdempotencyConflict`` and stores nothing.

        ``connection``: your own psycopg ``AsyncConnection`` (PostgreSQL backend only): the
        job is written inside the transaction that connection is in, so it exists if and
        only if that transaction commits (``Backend.enqueue_in_transaction``)."""
        request = job_request(task, data, options)
        return (await self.enqueue_many([request], connection=connection))[0]

    async def enqueue_many(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> list[Job]:
        """Enqueue a batch atomically: all jobs are stored, or (on bad input) none. With
        ``connection`` (see ``enqueue``), inside the caller's transaction."""
        requests = list(requests)
        _check_batch(requests)
        backend = self.app.backend
        now = await backend.time()
        jobs = [self.build(r, now) for r in requests]
        with self.app.tracing.send(jobs):  # puts the trace context in each job's meta
            if connection is None:
                stored = await backend.enqueue(jobs)
            else:
                # The event below says the job was written in the caller's transaction:
                # it is only visible to workers once (if) that transaction commits.
                stored = await backend.enqueue_in_transaction(jobs, connection)
        self._announce(jobs, stored)
        return stored

    def enqueue_blocking(
        self,
        requests: Iterable[JobRequest],
        run: Callable[[Coroutine[Any, Any, list[Job]]], list[Job]],
    ) -> list[Job]:
        """``enqueue_many`` for synchronous code (``BlockingClient``); ``run`` runs a
        coroutine on the app's event loop and returns its result. Where the backend can
        (``Backend.enqueue_now``), the jobs are built and stored in this thread, without
        the hop to the loop; after a failure that waiting may cure, the same jobs go to
        the loop's ``Backend.enqueue``, which retries. Events are emitted in this thread."""
        requests = list(requests)
        _check_batch(requests)
        backend = self.app.backend
        now = backend.clock_now()
        if now is None:
            return run(self.enqueue_many(requests))
        jobs = [self.build(r, now) for r in requests]
        with self.app.tracing.send(jobs):
            stored = backend.enqueue_now(jobs)
            if stored is None:
                stored = run(backend.enqueue(jobs))
        self._announce(jobs, stored)
        return stored

    def _announce(self, jobs: Sequence[Job], stored: Sequence[Job]) -> None:
        """``job_enqueued`` for each job stored (not for one that found its key held)."""
        for new, kept in zip(jobs, stored, strict=True):
            if new.id == kept.id:
                self.app.events.emit(
                    EventName.JOB_ENQUEUED,
                    job_id=kept.id,
                    task=kept.task,
                    queue=kept.queue,
                    user_id=kept.user_id,
                    state=kept.state.value,
                    run_at=kept.run_at,
                )

    # -- read -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        job_id = check_job_id(job_id)
        job = await self.app.backend.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list(
        self,
        *,
        state: JobState | str | Iterable[JobState | str] | None = None,
        queue: str | None = None,
        task: str | None = None,
        user_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Job]:
        """Jobs newest first; ``since``/``until``: created at or after / before (epoch s)."""
        states = _states(state)
        return await self.app.backend.list_jobs(
            JobQuery(
                queue=queue,
                states=states,
                task=task,
                user_id=user_id,
                since=since,
                until=until,
                cursor=cursor,
                limit=check_limit(limit),
            )
        )

    # -- cancel ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled by request") -> Job:
        """Cancel a job that has not finished. A running job's worker stops it at its next
        heartbeat and its result, if any, is discarded."""
        for _ in range(10):
            job = await self.get(job_id)
            if job.state not in CANCELLABLE_STATES:
                raise IllegalTransition(job.id, job.state.value, JobState.CANCELLED.value)
            now = await self.app.backend.time()
            cancelled = replace(
                job,
                state=JobState.CANCELLED,
                updated_at=now,
                finished_at=now,
                expires_at=now + self.app.keep_finished_for(job.task),
                lease_owner=None,
                lease_expires_at=None,
                meta={**job.meta, "cancel_reason": reason},
            )
            moved = await self.app.backend.move([Move(cancelled, job.state, job.attempts)])
            if moved[0]:
                self.app.events.emit(
                    EventName.JOB_CANCELLED,
                    job_id=job.id,
                    task=job.task,
                    queue=job.queue,
                    reason=reason,
                )
                return cancelled
        raise StateError(f"job {job_id} kept changing state; try again")

    # -- wait -----------------------------------------------------------------------------

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job to finish; return its result, or raise ``JobFailed`` if it
        ended dead or cancelled, or ``WaitTimeout`` after ``timeout`` seconds.

        A job whose task keeps no finished jobs (``keep_finished=0``) is deleted as it
        finishes, result and all: a wait that saw it before it went raises ``JobGone``
        (whether it completed or was cancelled is no longer known); a wait that starts
        after it went raises ``JobNotFound`` (``JobGone``'s base), like any unknown id."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = 0.005
        seen = False
        while True:
            try:
                job = await self.get(job_id)
            except JobNotFound:
                if seen:
                    raise JobGone(job_id) from None
                raise
            seen = True
            if job.state is JobState.COMPLETED:
                return job.result
            if job.state in (JobState.DEAD, JobState.CANCELLED):
                raise JobFailed(job)
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(f"job {job.id} is still {job.state.value} after {timeout} s")
            pause = interval if deadline is None else min(interval, max(deadline - loop.time(), 0))
            await asyncio.sleep(pause)
            interval = min(interval * 1.5, 0.5)


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be an integer 1..{MAX_PAGE}", field="limit")
    return limit


def _states(state: JobState | str | Iterable[JobState | str] | None) -> frozenset[JobState] | None:
    if state is None:
        return None
    items = [state] if isinstance(state, str) else list(state)
    return parse_choices(JobState, items, "state", "states")


def _check_batch(requests: Sequence[JobRequest]) -> None:
    if len(requests) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} jobs per batch", field="jobs")


def job_request(task: str | Task, data: Any, options: Mapping[str, Any]) -> JobRequest:
    """The request of ``enqueue(task, data, **options)``; an unknown option is bad input."""
    name = task.name if isinstance(task, Task) else task
    try:
        return JobRequest(task=name, data=data, **options)
    except TypeError as exc:
        raise InvalidInput(str(exc)) from exc
