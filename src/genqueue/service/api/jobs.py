"""``/api/v1/jobs``: submit, get, list and cancel jobs.

Fields are those of ``genqueue enqueue`` and the CLI's ``--json`` (``Job.to_public()``).
A client token may submit, and get or cancel only its own jobs; listing is for the admin
(a client's view would need a per-submitter index the backends do not keep). Listing by
creation time is not offered: the backends index jobs by state, queue, task and user, and
a time range would mean a scan; the newest-first pages and their cursor cover browsing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from genqueue.errors import JobNotFound
from genqueue.job import Job, JobState
from genqueue.queue import MAX_DELAY
from genqueue.retry import MAX_RETRIES_LIMIT
from genqueue.service import audit
from genqueue.service.api.common import (
    JOB_ID,
    Cursor,
    GenApp,
    Limit,
    Text,
    When,
    page,
    parse_when,
)
from genqueue.service.auth import SUBMITTED_BY, AdminCaller, AnyCaller, Caller

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID, description="The job's id (32 hex characters).")]


class SubmitJob(BaseModel):
    """One job to run."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A registered task name.")
    data: JsonValue = Field(None, description="The task's input (JSON).")
    user_id: str | None = Field(None, min_length=1, max_length=200)
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=150,
        description="Submitting again with the same key and data returns the same job "
        "(keys are scoped to the submitting token).",
    )
    delay: float | None = Field(None, ge=0, le=MAX_DELAY, description="Seconds before it runs.")
    max_retries: int | None = Field(None, ge=0, le=MAX_RETRIES_LIMIT)
    queue: str | None = Field(None, min_length=1, max_length=200)


CANCEL_REASON = "cancelled through the HTTP API"


class CancelJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(CANCEL_REASON, min_length=1, max_length=500)


async def _own_job(app: GenApp, caller: Caller, job_id: str) -> Job:
    job = await app.get(job_id)
    if not caller.owns(job.meta):
        raise JobNotFound(job.id)  # another client's job does not exist for this one
    return job


@router.post("/jobs", status_code=202, summary="Submit a job")
async def submit(
    body: SubmitJob, app: GenApp, caller: AnyCaller, response: Response
) -> dict[str, Any]:
    """Enqueue one job; answers 202 with the job and its URL in ``Location``."""
    key = body.idempotency_key
    if key is not None and not caller.is_admin:
        key = f"{caller.name}:{key}"  # one client cannot reach another's job through a key
    job = await app.enqueue(
        body.task,
        body.data,
        user_id=body.user_id,
        idempotency_key=key,
        delay=body.delay,
        max_retries=body.max_retries,
        queue=body.queue,
        meta={SUBMITTED_BY: caller.name},
    )
    if not caller.owns(job.meta):  # an idempotency key the admin used for a client's job
        raise JobNotFound(job.id)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job.to_public()


@router.get("/jobs/{job_id}", summary="Get a job")
async def get_job(job_id: JobId, app: GenApp, caller: AnyCaller) -> dict[str, Any]:
    """A job with every attempt (the CLI's ``job show --json``)."""
    return (await _own_job(app, caller, job_id)).to_public()


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
async def cancel_job(
    job_id: JobId, app: GenApp, caller: AnyCaller, body: CancelJob | None = None
) -> dict[str, Any]:
    """Cancel a job that has not finished (409 if it has)."""
    await _own_job(app, caller, job_id)
    reason = body.reason if body is not None else CANCEL_REASON
    job = await app.cancel(job_id, reason)
    await audit.record(app, caller.audit_name, "job.cancel", job.id, reason=reason)
    return job.to_public()


@router.get("/jobs", summary="List jobs")
async def list_jobs(
    app: GenApp,
    caller: AdminCaller,
    state: Annotated[list[JobState] | None, Query(description="Repeat for several.")] = None,
    queue: Text = None,
    task: Text = None,
    user_id: Text = None,
    since: When = None,
    until: When = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page.
    ``since``/``until`` (created at or after / before) take ISO 8601, epoch seconds or an
    age like ``24h``."""
    result = await app.queue.list(
        state=state or None,
        queue=queue,
        task=task,
        user_id=user_id,
        since=await parse_when(app, since, "since"),
        until=await parse_when(app, until, "until"),
        cursor=cursor,
        limit=limit,
    )
    return page([j.to_public() for j in result.items], result.next_cursor)
