"""``/api/v1/dlq``: find, understand and fix dead letters (admin only).

The filters are the CLI's (``user``, ``kind``, ``task``, ``queue``, ``fingerprint``,
``since``, ``until``) and the JSON is its ``--json``. Bulk actions take ids or a filter;
with ``dry_run`` they change nothing and answer how many match with a sample, so a
client can show the count before confirming. Every change is audited.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from genqueue import serialization
from genqueue.deadletter import CSV_COLUMNS, csv_row
from genqueue.entry import DeadLetter, DLQFilter
from genqueue.errors import InvalidInput
from genqueue.observability.alerts.seen import mark_seen
from genqueue.service import audit
from genqueue.service.api.common import (
    JOB_ID,
    Cursor,
    FilterBody,
    GenApp,
    Limit,
    QueryFilter,
    page,
)
from genqueue.service.auth import AdminCaller

router = APIRouter(prefix="/dlq", tags=["dead letters"])

EntryId = Annotated[str, Path(pattern=JOB_ID, description="The dead job's id.")]
SAMPLE = 5
MAX_IDS = 10_000


class BulkAction(BaseModel):
    """Entries to act on: ``ids``, or ``filter`` (``all: true`` for every entry)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(pattern=JOB_ID)]] | None = Field(
        None, min_length=1, max_length=MAX_IDS
    )
    filter: FilterBody | None = None
    all: bool = Field(False, description="Act on every entry (with no filter).")
    dry_run: bool = Field(False, description="Change nothing; answer the count and a sample.")
    limit: int | None = Field(None, ge=1, description="Act on at most this many.")

    def check(self) -> None:
        by_filter = self.all or (self.filter is not None)
        if (self.ids is not None) == by_filter:
            raise InvalidInput("give ids, or a filter (or all: true), not both", field="ids")
        if self.filter is not None and self.all:
            raise InvalidInput("all: true takes no filter", field="all")


class EditRedrive(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: JsonValue = Field(description="The job's new data.")


class Purge(BaseModel):
    """Delete every entry matching ``filter``; ``all: true`` for the whole DLQ,
    ``expired: true`` for entries past their retention."""

    model_config = ConfigDict(extra="forbid")

    filter: FilterBody | None = None
    all: bool = False
    expired: bool = False
    dry_run: bool = False


def _described(flt: FilterBody | None) -> dict[str, Any]:
    return flt.model_dump(exclude_none=True, mode="json") if flt is not None else {}


@router.get("", summary="List dead letter entries")
async def list_entries(
    app: GenApp, caller: AdminCaller, flt: QueryFilter, cursor: Cursor = None, limit: Limit = 100
) -> dict[str, Any]:
    """Entries newest first; pass ``next_cursor`` as ``cursor`` for the next page."""
    result = await app.dlq.list(await flt.build(app), cursor=cursor, limit=limit)
    return page([e.to_public() for e in result.items], result.next_cursor)


@router.get("/stats", summary="Dead letter totals and top failures")
async def stats(
    app: GenApp,
    caller: AdminCaller,
    flt: QueryFilter,
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Totals by error kind, task, user and day; the most frequent fingerprints."""
    return (await app.dlq.stats(await flt.build(app), top=top)).to_public()


@router.get(
    "/export",
    summary="Export entries (JSON Lines or CSV, streamed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "One entry per line.",
        }
    },
)
async def export(
    app: GenApp,
    caller: AdminCaller,
    flt: QueryFilter,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """Every matching entry, read in chunks, so any size streams in bounded memory."""
    selected = await flt.build(app)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        _export_lines(app, selected, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="dead-letters.{format}"'},
    )


async def _export_lines(app: GenApp, flt: DLQFilter, format: str) -> AsyncIterator[str]:
    if format == "jsonl":
        async for entry in app.dlq.iterate(flt):
            yield serialization.dumps_str(entry.to_public()) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    async for entry in app.dlq.iterate(flt):
        writer.writerow(csv_row(entry))
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.post("/redrive", summary="Redrive entries in bulk (ids or filter)")
async def redrive_many(body: BulkAction, app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Redrive the given ids or every entry matching the filter; ``dry_run`` first shows
    how many would be redriven, which would be refused, and a sample."""
    body.check()
    if body.ids is not None:
        report = await app.dlq.redrive_many(
            body.ids, dry_run=body.dry_run, limit=body.limit, by=caller.audit_name
        )
    else:
        report = await app.dlq.redrive_many(
            filter=await _filter(app, body.filter),
            dry_run=body.dry_run,
            limit=body.limit,
            by=caller.audit_name,
        )
    if not body.dry_run and report.redriven:
        await audit.record(
            app,
            caller.audit_name,
            "dlq.redrive",
            None,
            count=len(report.redriven),
            ids=report.redriven[:100],
            filter=_described(body.filter),
        )
    return report.to_public()


@router.post("/delete", summary="Delete entries in bulk (ids or filter)")
async def delete_many(body: BulkAction, app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Delete entries (and their dead jobs) for good; ``dry_run`` answers the count and a
    sample first."""
    body.check()
    if body.ids is None:
        return await _delete_by_filter(body, app, caller.audit_name)
    ids = list(dict.fromkeys(i.lower() for i in body.ids))[: body.limit]
    entries = [e for e in [await app.backend.dlq_get(i) for i in ids] if e is not None]
    found = [e.job_id for e in entries]
    missing = [i for i in ids if i not in found]
    if body.dry_run:
        return _delete_report(True, len(found), 0, [], missing, entries)
    deleted = await app.dlq.delete_many(found)
    await _audit_delete(app, caller.audit_name, len(deleted), deleted, None)
    return _delete_report(False, len(found), len(deleted), deleted, missing, [])


async def _delete_by_filter(body: BulkAction, app: GenApp, who: str) -> dict[str, Any]:
    flt = await _filter(app, body.filter)
    if body.dry_run:
        count = await app.dlq.count(flt)
        sample = (await app.dlq.list(flt, limit=SAMPLE)).items
        matched = count if body.limit is None else min(count, body.limit)
        return _delete_report(True, matched, 0, [], [], sample)
    if body.limit is None:  # everything matching, in chunks
        count = await app.dlq.purge(flt)
        await _audit_delete(app, who, count, [], body.filter)
        return _delete_report(False, count, count, [], [], [])
    chosen: list[str] = []
    async for entry in app.dlq.iterate(flt):
        chosen.append(entry.job_id)
        if len(chosen) >= body.limit:
            break
    deleted = await app.dlq.delete_many(chosen)
    await _audit_delete(app, who, len(deleted), deleted, body.filter)
    return _delete_report(False, len(chosen), len(deleted), deleted, [], [])


def _delete_report(
    dry_run: bool,
    matched: int,
    deleted: int,
    deleted_ids: list[str],
    missing: list[str],
    sample: list[DeadLetter],
) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "matched": matched,
        "deleted": deleted,
        "deleted_ids": deleted_ids[:1000],
        "not_found": missing,
        "sample": [e.to_public() for e in sample[:SAMPLE]],
    }


async def _audit_delete(
    app: GenApp, who: str, count: int, ids: list[str], flt: FilterBody | None
) -> None:
    if count:
        await audit.record(
            app, who, "dlq.delete", None, count=count, ids=ids[:100], filter=_described(flt)
        )


async def _filter(app: GenApp, flt: FilterBody | None) -> DLQFilter:
    return await flt.build(app) if flt is not None else DLQFilter()


@router.post("/purge", summary="Delete every entry matching a filter")
async def purge(body: Purge, app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Answers ``{"dry_run", "count"}`` (the CLI's ``dlq purge --json``)."""
    if sum((body.filter is not None, body.all, body.expired)) != 1:
        raise InvalidInput("give one of filter, all: true, expired: true", field="filter")
    if body.expired:
        now = await app.backend.time()
        expired = DLQFilter(until=now - app.retention.dead_letters)
        count = await app.dlq.count(expired) if body.dry_run else await app.dlq.expire()
    else:
        flt = await _filter(app, body.filter)
        count = await app.dlq.purge(flt, dry_run=body.dry_run)
    if count and not body.dry_run:
        await audit.record(
            app,
            caller.audit_name,
            "dlq.purge",
            None,
            count=count,
            expired=body.expired,
            filter=_described(body.filter),
        )
    return {"dry_run": body.dry_run, "count": count}


@router.get("/{job_id}", summary="Get one entry with its attempt history")
async def get_entry(job_id: EntryId, app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Why it failed, every attempt (time, worker, duration, kind, status, message, delay,
    remote id, cost), the stack (the CLI's ``dlq show --json``)."""
    entry = await app.dlq.get(job_id)
    await mark_seen(app, [entry])  # somebody looked: the retention_unseen alert skips it
    return entry.to_public()


@router.post("/{job_id}/redrive", summary="Redrive one entry")
async def redrive_one(job_id: EntryId, app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Put the job back in its queue (retry count reset, history kept); answers the job."""
    job = await app.dlq.redrive(job_id)
    await audit.record(app, caller.audit_name, "dlq.redrive", job.id, count=1)
    return job.to_public()


@router.post("/{job_id}/edit-redrive", summary="Redrive one entry with new data")
async def edit_redrive(
    job_id: EntryId, body: EditRedrive, app: GenApp, caller: AdminCaller
) -> dict[str, Any]:
    """Replace the job's data (checked like a submit's) and redrive it; audited with
    digests of the old and new data (never the data itself)."""
    before = await app.dlq.get(job_id)
    job = await app.dlq.redrive_edited(job_id, body.data, by=caller.audit_name)
    await audit.record(
        app,
        caller.audit_name,
        "dlq.edit_redrive",
        job.id,
        old_data_digest=serialization.data_digest(before.job.data),
        new_data_digest=serialization.data_digest(job.data),
    )
    return job.to_public()
