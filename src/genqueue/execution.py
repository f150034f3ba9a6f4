"""Running one job, and turning how it ended into the job's next state.

``execute`` calls the task (async in the loop, sync in a thread, under the task's
timeout) and reduces whatever happened to an ``Outcome``. ``plan`` applies the policies
(classification was done in ``execute``; retry/backoff and DLQ rules here) and returns
the ``Move`` to store plus what to announce. Nothing here touches storage.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from genqueue.backends.base import Move
from genqueue.classify import ClassifiedError, ErrorClassifier, ErrorKind
from genqueue.context import NOTES_META, JobContext, LeaseLost
from genqueue.entry import DeadLetter
from genqueue.errors import InvalidInput
from genqueue.job import Attempt, AttemptOutcome, Job, JobState
from genqueue.retry import RetryDecision, RetryPolicy, normalise_count
from genqueue.serialization import MAX_DATA_BYTES, check_json
from genqueue.settings import Retention
from genqueue.signals import Cancel, Retry, Snooze
from genqueue.task import Task
from genqueue.threads import TaskThread


class OutcomeKind(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"  # the task raised Retry
    SNOOZE = "snooze"
    CANCEL = "cancel"
    RELEASE = "release"  # graceful shutdown gave up on it; back to the queue


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    result: Any = None
    error: ClassifiedError | None = None
    delay: float | None = None
    reason: str = ""


async def execute(
    task: Task,
    ctx: JobContext,
    classifier: ErrorClassifier,
    thread: TaskThread | None,
    *,
    cancelled_by_worker: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Run the task once, in the attempt's span when tracing is on (see ``_run``)."""
    with ctx.app.tracing.attempt(ctx.job) as span:
        return span.ended(await _run(task, ctx, classifier, thread, cancelled_by_worker))


async def _run(
    task: Task,
    ctx: JobContext,
    classifier: ErrorClassifier,
    thread: TaskThread | None,
    cancelled_by_worker: Callable[[], bool],
) -> Outcome:
    """Run the task once and say how it ended.

    Whatever the task raises is its own failure, ``BaseException`` included (a task's
    ``SystemExit`` must not stop the worker; the worker's signals reach it through its own
    handlers). Two exceptions propagate: the ``CancelledError`` of a cancellation the
    worker made (``cancelled_by_worker()``: shutdown, lease lost), and ``LeaseLost`` (the
    context could not store an update: the lease is gone, so the attempt is not the
    task's to fail). The task's timeout ends as a ``timeout`` failure. Sync tasks run in
    ``thread``.
    """
    timeout = ctx.job.timeout if ctx.job.timeout is not None else task.options.timeout
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            if task.data_model is not None:
                ctx.use_data(task.parse_data(ctx.job.data))  # InvalidInput: validation
            result = await _call(task, ctx, thread, scope.expired)
    except Retry as signal:
        return Outcome(OutcomeKind.RETRY, delay=signal.delay, reason=signal.reason)
    except Snooze as signal:
        return Outcome(OutcomeKind.SNOOZE, delay=signal.delay, reason=signal.reason)
    except Cancel as signal:
        return Outcome(OutcomeKind.CANCEL, reason=signal.reason)
    except LeaseLost:
        raise
    except asyncio.CancelledError as exc:
        if cancelled_by_worker():
            raise
        return Outcome(OutcomeKind.FAILED, error=_own_cancellation(classifier, exc))
    except BaseException as exc:
        raised = exc
        if scope.expired():
            # Whatever the task raised on its way out, it was stopped by its timeout.
            raised = TimeoutError(f"task {task.name} timed out after {timeout} s")
        return Outcome(OutcomeKind.FAILED, error=classify_raised(classifier, raised))
    return _completed(result, classifier)


async def _call(
    task: Task, ctx: JobContext, thread: TaskThread | None, timed_out: Callable[[], bool]
) -> Any:
    if task.is_async:
        return await task.fn(ctx)
    if thread is None:
        raise TypeError(f"sync task {task.name} needs a thread to run in")
    # Sync tasks run in a thread, with the caller's context variables.
    call = functools.partial(contextvars.copy_context().run, task.fn, ctx)
    return await thread.run(call, timed_out)


def classify_raised(classifier: ErrorClassifier, exc: BaseException) -> ClassifiedError:
    """What the task raised, as its failure."""
    error = classifier.classify(exc)
    if isinstance(exc, Exception):
        return error
    # SystemExit, KeyboardInterrupt, GeneratorExit...: say plainly what the task did.
    name = type(exc).__name__
    detail = "" if error.message == name else f": {error.message}"
    return replace(error, message=f"task raised {name}{detail}")


def _own_cancellation(classifier: ErrorClassifier, exc: asyncio.CancelledError) -> ClassifiedError:
    """The task raised CancelledError itself, or what it awaited was cancelled by others."""
    error = classify_raised(classifier, exc)
    note = ", but the worker did not cancel it"
    # Keep the current cancellation count balanced: this one ends here, as a failure.
    current = asyncio.current_task()
    while current is not None and current.cancelling():
        current.uncancel()
    return replace(error, message=error.message + note)


def _completed(result: Any, classifier: ErrorClassifier) -> Outcome:
    # Strict JSON: NaN, Infinity or an object the encoder would turn into null or a
    # string must fail the attempt, not be stored as something the task did not return.
    try:
        check_json(result, field="result", max_bytes=MAX_DATA_BYTES, refuse_secrets=False)
    except InvalidInput as exc:
        refused = InvalidInput(f"task result cannot be stored as JSON: {exc.message}")
        return Outcome(OutcomeKind.FAILED, error=_not_retryable(classifier.classify(refused)))
    return Outcome(OutcomeKind.COMPLETED, result=result)


def _not_retryable(error: ClassifiedError) -> ClassifiedError:
    return replace(error, kind=ErrorKind.VALIDATION, retryable=False)


def unrunnable(job: Job, task: Task | None) -> Outcome | None:
    """Why the job cannot run at all (undecodable data, unknown task), if it cannot."""
    if job.data_error is not None:
        error = failure(
            ErrorKind.VALIDATION,
            f"job data cannot be decoded: {job.data_error}",
            "genqueue.UndecodableJob",
            retryable=False,
        )
        return Outcome(OutcomeKind.FAILED, error=error)
    if task is None:
        error = failure(
            ErrorKind.VALIDATION,
            f"no task named {job.task!r} is registered in this worker",
            "genqueue.UnknownTask",
            retryable=False,
        )
        return Outcome(OutcomeKind.FAILED, error=error)
    return None


def failure(kind: ErrorKind, message: str, error_type: str, *, retryable: bool) -> ClassifiedError:
    """A failure that did not come from an exception (lost worker, undecodable job...)."""
    return ClassifiedError(kind=kind, retryable=retryable, message=message, type=error_type)


def worker_lost(job: Job, classifier: ErrorClassifier, why: str) -> Outcome:
    """The attempt's worker lost the job (died, or its lease expired): a failed attempt,
    retried only when the task's classifier counts ``worker_lost`` as transient."""
    kinds = classifier.retryable_kinds
    error = failure(ErrorKind.WORKER_LOST, why, "genqueue.WorkerLost",
                    retryable=ErrorKind.WORKER_LOST in kinds)  # fmt: skip
    return Outcome(OutcomeKind.FAILED, error=error)


# -- planning ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    move: Move
    attempt: Attempt
    decision: RetryDecision | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PlanContext:
    now: float
    worker_id: str | None
    policy: RetryPolicy
    retention: Retention
    #: Set when a lost worker's job is being reclaimed.
    reclaim: bool = False
    #: Seconds the job is kept once completed or cancelled (``App.keep_finished_for``);
    #: None: the retention's ``finished_jobs``.
    keep_finished: float | None = None
    #: False: a completed job does not store its result (the task's ``keep_result``).
    keep_result: bool = True

    @property
    def expires_at(self) -> float:
        """When a job finishing now is deleted by retention."""
        keep = self.retention.finished_jobs if self.keep_finished is None else self.keep_finished
        return self.now + keep


def plan(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    """The move that records ``outcome`` for the active ``job``."""
    builders: dict[OutcomeKind, Callable[[Job, Outcome, PlanContext], Plan]] = {
        OutcomeKind.COMPLETED: _plan_completed,
        OutcomeKind.FAILED: _plan_failed,
        OutcomeKind.RETRY: _plan_retry_signal,
        OutcomeKind.SNOOZE: _plan_snooze,
        OutcomeKind.CANCEL: _plan_cancel,
        OutcomeKind.RELEASE: _plan_release,
    }
    return builders[outcome.kind](job, outcome, ctx)


def _attempt(job: Job, ctx: PlanContext, outcome: AttemptOutcome, **extra: Any) -> Attempt:
    details: dict[str, Any] = {}
    spent = job.meta.get("attempt_cost")
    if spent:
        details["cost"] = spent
    if job.remote_job_id:
        details["remote_job_id"] = job.remote_job_id
    details.update(job.meta.get(NOTES_META) or {})
    return Attempt(
        number=job.attempts,
        started_at=job.started_at if job.started_at is not None else ctx.now,
        finished_at=ctx.now,
        worker=job.lease_owner or ctx.worker_id,
        outcome=outcome,
        details=details,
        **extra,
    )


def _next(job: Job, state: JobState, attempt: Attempt, ctx: PlanContext, **changes: Any) -> Job:
    meta = {k: v for k, v in job.meta.items() if k not in ("attempt_cost", NOTES_META)}
    return replace(
        job,
        state=state,
        updated_at=ctx.now,
        lease_owner=None,
        lease_expires_at=None,
        history=[*job.history, attempt],
        meta=meta,
        **changes,
    )


def _move(job: Job, new: Job, ctx: PlanContext, entry: DeadLetter | None = None) -> Move:
    return Move(new, JobState.ACTIVE, job.attempts, entry, require_expired_lease=ctx.reclaim)


def _plan_completed(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    attempt = _attempt(job, ctx, AttemptOutcome.COMPLETED)
    new = _next(
        job,
        JobState.COMPLETED,
        attempt,
        ctx,
        result=outcome.result if ctx.keep_result else None,
        finished_at=ctx.now,
        expires_at=ctx.expires_at,
        last_error=_without_stack(job.last_error),
    )
    # The job succeeded: its earlier failures keep their kind, type and message (what
    # `jobs show` and the retry analytics read), not their stacks (most of their bytes).
    new.history = [replace(a, error=_without_stack(a.error)) for a in new.history]
    return Plan(_move(job, new, ctx), attempt)


def _without_stack(error: ClassifiedError | None) -> ClassifiedError | None:
    return error if error is None or error.stack is None else replace(error, stack=None)


def _plan_failed(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    error = outcome.error
    assert error is not None
    decision = ctx.policy.decide(error, job.retry_count, job.max_retries)
    if decision.retry:
        return _retrying(job, error, decision, ctx)
    return _dead(job, error, decision.reason, ctx, decision)


def _plan_retry_signal(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    error = failure(ErrorKind.UNKNOWN, outcome.reason, "genqueue.Retry", retryable=True)
    count = normalise_count(job.retry_count)
    if count >= job.max_retries:
        reason = f"retries exhausted ({count} of {job.max_retries} used)"
        return _dead(job, error, reason, ctx, RetryDecision(False, reason))
    delay = outcome.delay if outcome.delay is not None else ctx.policy.delay(count)
    decision = RetryDecision(
        True, f"{outcome.reason}; retry {count + 1} of {job.max_retries}", delay
    )
    return _retrying(job, error, decision, ctx)


def _retrying(job: Job, error: ClassifiedError, decision: RetryDecision, ctx: PlanContext) -> Plan:
    attempt = _attempt(job, ctx, AttemptOutcome.FAILED, error=error, delay=decision.delay)
    new = _next(
        job,
        JobState.RETRYING,
        attempt,
        ctx,
        retry_count=normalise_count(job.retry_count) + 1,
        run_at=ctx.now + decision.delay,
        last_error=error,
    )
    return Plan(_move(job, new, ctx), attempt, decision)


def _dead(
    job: Job, error: ClassifiedError, reason: str, ctx: PlanContext, decision: RetryDecision
) -> Plan:
    attempt = _attempt(job, ctx, AttemptOutcome.DEAD, error=error)
    new = _next(job, JobState.DEAD, attempt, ctx, last_error=error, finished_at=ctx.now)
    entry = DeadLetter(
        job=new,
        reason=reason,
        error_kind=error.kind,
        failed_at=ctx.now,
        fingerprint=error.fingerprint,
        expires_at=ctx.now + ctx.retention.dead_letters,
    )
    return Plan(_move(job, new, ctx, entry), attempt, decision)


def _plan_snooze(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    delay = outcome.delay or 0.0
    attempt = _attempt(job, ctx, AttemptOutcome.SNOOZED, delay=delay)
    attempt.details.update(reason=outcome.reason, snoozes=1)
    last = job.history[-1] if job.history else None
    if (
        last is not None
        and last.outcome is AttemptOutcome.SNOOZED
        and last.details.get("reason") == outcome.reason
    ):
        # A job that keeps waiting for the same reason (a cooldown, a free slot) gets one
        # history entry that counts its snoozes, not one entry per wake-up.
        attempt = replace(
            last,
            finished_at=ctx.now,
            delay=delay,
            details={**last.details, "snoozes": int(last.details.get("snoozes", 1)) + 1},
        )
        job = replace(job, history=job.history[:-1])
    new = _next(job, JobState.SCHEDULED, attempt, ctx, run_at=ctx.now + delay)
    return Plan(_move(job, new, ctx), attempt)


def _plan_cancel(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    attempt = _attempt(job, ctx, AttemptOutcome.CANCELLED)
    new = _next(
        job, JobState.CANCELLED, attempt, ctx, finished_at=ctx.now, expires_at=ctx.expires_at
    )
    new.meta["cancel_reason"] = outcome.reason
    return Plan(_move(job, new, ctx), attempt)


def _plan_release(job: Job, outcome: Outcome, ctx: PlanContext) -> Plan:
    attempt = _attempt(job, ctx, AttemptOutcome.INTERRUPTED)
    new = _next(job, JobState.QUEUED, attempt, ctx, run_at=ctx.now)
    return Plan(_move(job, new, ctx), attempt)
