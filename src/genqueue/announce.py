"""The events that tell what happened to a job once its outcome is stored.

One outcome can mean several events (a failure is a ``queue_error``, a ``retry_decision``
and then a ``queue_retry`` or a ``queue_dlq_move``); this module decides which, with
their fields, so the worker only says "this plan was applied".
"""

from __future__ import annotations

from genqueue.events import EventName, Events
from genqueue.execution import Outcome, OutcomeKind, Plan
from genqueue.job import Job, JobState


def announce(events: Events, job: Job, outcome: Outcome, plan: Plan) -> None:
    """Emit the events of ``plan``, applied to ``job`` (the job as it was running)."""
    new = plan.move.job
    base = {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempts}
    #: What this attempt cost (metrics add it to spend; wasted when the attempt failed).
    spent = plan.attempt.details.get("cost") or None
    if outcome.kind is OutcomeKind.COMPLETED:
        events.emit(
            EventName.JOB_COMPLETED,
            **base,
            duration=round(plan.attempt.duration, 6),
            retry_count=new.retry_count,
            redrive_count=new.redrive_count,
            attempt_cost=spent,
        )
    elif outcome.kind is OutcomeKind.SNOOZE:
        events.emit(
            EventName.JOB_SNOOZED,
            **base,
            delay=outcome.delay,
            run_at=new.run_at,
            attempt_cost=spent,
        )
    elif outcome.kind is OutcomeKind.CANCEL:
        events.emit(EventName.JOB_CANCELLED, **base, reason=outcome.reason, attempt_cost=spent)
    elif outcome.kind is OutcomeKind.RELEASE:
        events.emit(EventName.JOB_RELEASED, **base, reason=outcome.reason, attempt_cost=spent)
    else:
        _failure(events, job, new, plan, base)


def _failure(events: Events, job: Job, new: Job, plan: Plan, base: dict[str, object]) -> None:
    error = new.last_error
    decision = plan.decision
    assert error is not None
    assert decision is not None
    events.emit(
        EventName.QUEUE_ERROR,
        **base,
        user_id=job.user_id,
        error_kind=error.kind.value,
        error_type=error.type,
        error_message=error.message,
        stack=error.stack,
        status=error.status,
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        remote_job_id=job.remote_job_id,
        duration=round(plan.attempt.duration, 6),
        attempt_cost=plan.attempt.details.get("cost") or None,
    )
    events.emit(
        EventName.RETRY_DECISION,
        **base,
        allowed=decision.retry,
        reason=decision.reason,
        error_kind=error.kind.value,
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        delay=decision.delay if decision.retry else None,
    )
    if new.state is JobState.RETRYING:
        events.emit(
            EventName.QUEUE_RETRY,
            **base,
            retry_count=new.retry_count,
            delay=decision.delay,
            run_at=new.run_at,
        )
        return
    entry = plan.move.entry
    assert entry is not None
    events.emit(
        EventName.QUEUE_DLQ_MOVE,
        **base,
        user_id=job.user_id,
        reason=entry.reason,
        error_kind=entry.error_kind.value,
        fingerprint=entry.fingerprint,
        remote_job_id=job.remote_job_id,
        retry_count=new.retry_count,
        cost=new.cost or None,
    )


def announce_started(events: Events, job: Job, worker: str) -> None:
    """A worker began an attempt (``job`` as fetched)."""
    waited = round(max(0.0, (job.started_at or job.run_at) - job.run_at), 6)
    events.emit(EventName.JOB_STARTED, job_id=job.id, task=job.task, queue=job.queue,
                attempt=job.attempts, worker=worker, waited=waited)  # fmt: skip


def announce_overrun(
    events: Events, job: Job, worker: str, reason: str, running_for: float
) -> None:
    """A sync task's attempt ended (timeout, shutdown) but its thread runs on."""
    events.emit(EventName.ATTEMPT_OVERRUN, job_id=job.id, task=job.task, queue=job.queue,
                attempt=job.attempts, worker=worker, reason=reason,
                running_for=running_for)  # fmt: skip
