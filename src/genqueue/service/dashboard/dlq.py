"""The dead letter pages: list (filters, free-text search, groups by fingerprint), entry
detail (attempt timeline, redacted payload), and the actions: retry, edit-and-retry,
delete, and bulk redrive/delete of a selection or of everything matching a filter, each
shown with its count on a confirm page first. Every action is audited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genqueue.classify import ErrorKind
from genqueue.deadletter import SEARCH_SCAN
from genqueue.entry import DeadLetter, DLQFilter
from genqueue.errors import InvalidInput
from genqueue.job import check_job_id
from genqueue.observability.alerts.seen import mark_seen
from genqueue.redact import MASK
from genqueue.serialization import data_digest, parse_instant
from genqueue.service import audit
from genqueue.service.dashboard.csrf import verify
from genqueue.service.dashboard.web import field, page, read_form, redirect

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.service.dashboard.session import Session, Sessions

PAGE = 50
FILTER_FIELDS = ("user", "kind", "task", "queue", "fingerprint", "since", "until")
_SECRET_KEY = re.compile(r"(?i)(api[_-]?key|token|secret|password|authorization|credential)")


def shown_data(app: App, data: Any) -> str:
    """The payload as indented JSON, with secret-named keys and credential-shaped text masked."""
    return orjson.dumps(_mask_keys(app.redactor.deep(data)), option=orjson.OPT_INDENT_2).decode()


def _mask_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if _SECRET_KEY.search(str(k)) and v is not None else _mask_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_keys(v) for v in value]
    return value


def parse_filter(values: Mapping[str, str]) -> DLQFilter:
    def text(name: str) -> str | None:
        return values.get(name, "").strip() or None

    def instant(name: str) -> float | None:
        raw = text(name)
        if raw is None:
            return None
        try:
            return parse_instant(raw)
        except ValueError as exc:
            raise InvalidInput(f"{name}: {exc}", field=name) from exc

    return DLQFilter(
        user_id=text("user"),
        error_kind=text("kind"),
        task=text("task"),
        queue=text("queue"),
        fingerprint=text("fingerprint"),
        since=instant("since"),
        until=instant("until"),
    )


def add_routes(router: APIRouter, app: App, sessions: Sessions) -> None:
    @router.get("/dlq")
    async def dlq_list(request: Request) -> Response:
        session = sessions.require(request)
        params = {k: request.query_params.get(k, "").strip() for k in (*FILTER_FIELDS, "q")}
        filter = parse_filter(params)
        cursor = request.query_params.get("cursor") or None
        scanned = None
        if params["q"]:
            searched = await app.dlq.search(
                params["q"], filter, cursor=cursor, limit=PAGE, scan=SEARCH_SCAN
            )
            entries, next_cursor = searched.items, searched.next_cursor
            scanned = searched.scanned
        else:
            found = await app.dlq.list(filter, cursor=cursor, limit=PAGE)
            entries, next_cursor = found.items, found.next_cursor
        return page(
            request,
            "dlq.html",
            session=session,
            entries=entries,
            next_cursor=next_cursor,
            params=params,
            filter_params={k: params[k] for k in FILTER_FIELDS},
            total=await app.dlq.count(filter),
            groups=await app.dlq.groups(filter, top=10),
            kinds=[k.value for k in ErrorKind],
            scanned=scanned,
            search_limit=SEARCH_SCAN,
            done=request.query_params.get("done", ""),
        )

    @router.get("/dlq/{job_id}")
    async def dlq_entry(request: Request, job_id: str) -> Response:
        session = sessions.require(request)
        entry = await app.dlq.get(job_id)
        await mark_seen(app, [entry])  # somebody looked: the retention_unseen alert skips it
        return _entry_page(request, app, session=session, entry=entry)

    @router.post("/dlq/{job_id}/retry")
    async def retry(request: Request, job_id: str) -> Response:
        session = await _checked(request, sessions)
        job = await app.dlq.redrive(job_id)
        await audit.record(app, who=session.who, action="dlq.redrive", job_ids=[job.id])
        return redirect(request, f"/jobs/{job.id}")

    @router.post("/dlq/{job_id}/edit")
    async def edit(request: Request, job_id: str) -> Response:
        session = sessions.require(request)
        form = await read_form(request)
        verify(request, session, form)
        entry = await app.dlq.get(job_id)
        try:
            data = _new_data(field(form, "data"))
            job = await app.dlq.redrive_edited(job_id, data, by=session.who)
        except InvalidInput as exc:
            return _entry_page(
                request, app, session=session, entry=entry, error=str(exc), draft=form
            )
        job_id = job.id
        await audit.record(
            app,
            who=session.who,
            action="dlq.edit_redrive",
            job_ids=[job_id],
            data_digest=data_digest(data),
        )
        return redirect(request, f"/jobs/{job_id}")

    @router.post("/dlq/{job_id}/delete")
    async def delete(request: Request, job_id: str) -> Response:
        session = await _checked(request, sessions)
        await app.dlq.delete(job_id)
        await audit.record(
            app, who=session.who, action="dlq.delete", job_ids=[check_job_id(job_id)]
        )
        return redirect(request, "/dlq?done=" + "deleted 1 entry")

    @router.post("/dlq/bulk")
    async def bulk(request: Request) -> Response:
        session = sessions.require(request)
        form = await read_form(request)
        verify(request, session, form)
        return await _bulk(request, app, session, form)


async def _checked(request: Request, sessions: Sessions) -> Session:
    session = sessions.require(request)
    verify(request, session, await read_form(request))
    return session


def _entry_page(
    request: Request,
    app: App,
    *,
    session: Session,
    entry: DeadLetter,
    error: str | None = None,
    draft: dict[str, list[str]] | None = None,
) -> Response:
    shown = shown_data(app, entry.job.data)
    return page(
        request,
        "dlq_entry.html",
        400 if error else 200,
        session=session,
        entry=entry,
        job=entry.job,
        data=shown,
        draft=field(draft, "data") if draft else shown,
        error=error,
        max_redrives=app.retention.max_redrives,
    )


def _new_data(text: str) -> Any:
    """The edited data from the form (the task's model and JSON rules are checked by
    ``DeadLetterQueue.redrive_edited``)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"data is not valid JSON: {exc}", field="data") from exc
    if MASK in orjson.dumps(data).decode():
        raise InvalidInput(f"replace every {MASK} value before retrying", field="data")
    return data


async def _bulk(
    request: Request, app: App, session: Session, form: dict[str, list[str]]
) -> Response:
    action = field(form, "action")
    if action not in ("redrive", "delete"):
        raise InvalidInput("action must be redrive or delete", field="action")
    scope = field(form, "scope")
    params = {k: field(form, k) for k in FILTER_FIELDS}
    filter = parse_filter(params)
    ids = [check_job_id(i) for i in form.get("ids", []) if i.strip()] if scope != "filter" else []
    if scope != "filter" and not ids:
        raise InvalidInput("select at least one entry, or act on all matching the filter")
    if field(form, "confirm") != "yes":
        return await _confirm_page(
            request,
            app,
            session=session,
            action=action,
            scope=scope,
            ids=ids,
            filter=filter,
            params=params,
        )
    selection = None if scope == "filter" else ids
    if action == "redrive":
        report = await app.dlq.redrive_many(selection, filter=filter if selection is None else None)
        done, refused = report.redriven, len(report.refused)
    else:
        chosen = selection or [e.job_id async for e in app.dlq.iterate(filter)]
        done, refused = await app.dlq.delete_many(chosen), 0
    await audit.record(
        app,
        who=session.who,
        action=f"dlq.bulk_{action}",
        job_ids=done[:50],
        count=len(done),
        scope=scope,
        filter={k: v for k, v in params.items() if v},
    )
    verb = "redrove" if action == "redrive" else "deleted"
    message = f"{verb} {len(done)} entries" + (f", {refused} refused" if refused else "")
    return redirect(request, "/dlq?" + urlencode({"done": message}))


async def _confirm_page(
    request: Request,
    app: App,
    *,
    session: Session,
    action: str,
    scope: str,
    ids: list[str],
    filter: DLQFilter,
    params: dict[str, str],
) -> Response:
    if scope == "filter":
        count = await app.dlq.count(filter)
        sample = (await app.dlq.list(filter, limit=10)).items
    else:
        count = len(ids)
        sample = [e for e in [await app.backend.dlq_get(i) for i in ids[:10]] if e is not None]
    return page(
        request,
        "dlq_confirm.html",
        session=session,
        action=action,
        scope=scope,
        ids=ids,
        count=count,
        sample=sample,
        params=params,
    )
