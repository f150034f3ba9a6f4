"""``/api/v1`` operations: queue counts, analytics, breakers, alerts, workers, the audit
log and health probes. ``/healthz`` (the process answers) and ``/readyz`` (the backend answers)
need no token, for load balancers; everything else needs the admin token."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from genqueue.analytics import MAX_WINDOW
from genqueue.app import App
from genqueue.errors import InvalidInput
from genqueue.observability.alerts.state import MAX_RECENT, RECENT, Which, list_alerts
from genqueue.presence import live_workers
from genqueue.serialization import iso
from genqueue.service import audit
from genqueue.service.api.common import GenApp, Text, parse_duration
from genqueue.service.auth import AdminCaller

router = APIRouter(tags=["operations"])
probes = APIRouter(tags=["health"])

#: A worker whose last heartbeat is older than this is not listed (the default lease).
WORKER_STALE_AFTER = 30.0


@router.get("/queues", summary="Jobs per queue and state")
async def queues(app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    """Counts per queue and state, and the number of dead letter entries."""
    return {"queues": await app.backend.counts(), "dead_letters": await app.dlq.count()}


@router.get("/analytics", summary="Retry and redrive success, failure rates")
async def analytics(
    app: GenApp,
    caller: AdminCaller,
    window: Annotated[str, Query(min_length=1, max_length=32, description="1m to 7d.")] = "1h",
    task: Text = None,
    top: Annotated[int, Query(ge=1, le=50)] = 3,
) -> dict[str, Any]:
    """Success and failure rates over ``window`` (like ``genqueue stats --window``)."""
    seconds = parse_duration(window, "window")
    if not 60 <= seconds <= MAX_WINDOW:
        raise InvalidInput("window must be between 1m and 7d", field="window")
    return (await app.analytics(seconds, task=task, top=top)).to_dict()


@router.get("/breakers", summary="Provider circuit breakers")
async def breakers(app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    from genqueue.providers.breaker import list_breakers

    return {"items": await list_breakers(app)}


@router.post("/breakers/{account}/reset", summary="Close a provider's circuit breaker")
async def reset_breaker(
    account: Annotated[str, Path(min_length=1, max_length=200)], app: GenApp, caller: AdminCaller
) -> dict[str, Any]:
    """Close the breaker of ``account`` (a unique prefix will do); 404 if none matches."""
    from genqueue.providers.breaker import reset_breaker as reset

    was_open = await reset(app, account)
    await audit.record(app, caller.audit_name, "breaker.reset", account, was_open=was_open)
    return {"reset": was_open}


class Alert(BaseModel):
    """One alert (``genqueue alerts list --json``); times are ISO 8601 UTC."""

    rule: str
    severity: str
    state: Literal["firing", "resolved"]
    title: str
    since: str = Field(description="When it fired.")
    resolved_at: str | None
    value: int | float | None = Field(description="The rule's value when last evaluated.")
    threshold: int | float
    unit: str = Field(description="count, ratio or seconds.")
    summary: str
    repeats: int = Field(description="Repeat notifications sent while it fires.")
    last_sent_at: str
    evaluated_at: str


class Alerts(BaseModel):
    """Active and recent alerts, as the evaluating worker stored them."""

    active: list[Alert] = Field(description="Firing, oldest first.")
    recent: list[Alert] = Field(description="Resolved, newest first.")
    evaluated_at: str | None = Field(description="The last evaluation (null: none yet).")
    evaluator: str | None = Field(description="The worker that evaluated last.")


@router.get("/alerts", summary="Active and recently resolved alerts")
async def alerts(
    app: GenApp,
    caller: AdminCaller,
    state: Annotated[Which, Query(description="firing, resolved or all.")] = "all",
    limit: Annotated[int, Query(ge=0, le=MAX_RECENT, description="Resolved to show.")] = RECENT,
) -> Alerts:
    """Like ``genqueue alerts list --json``; ``state`` keeps only the firing or the
    resolved alerts (the other list is then empty)."""
    listing = await list_alerts(app.backend, recent=limit, which=state)
    return Alerts.model_validate(listing.to_public())


@router.get("/workers", summary="Live workers (heartbeats)")
async def workers(app: GenApp, caller: AdminCaller) -> dict[str, Any]:
    found = await live_workers(app, WORKER_STALE_AFTER)
    items = [
        {**w.to_dict(), "started_at": iso(w.started_at), "seen_at": iso(w.seen_at)} for w in found
    ]
    return {"items": items}


@router.get("/audit", summary="The audit log, newest first")
async def audit_log(
    app: GenApp, caller: AdminCaller, limit: Annotated[int, Query(ge=1, le=audit.KEEP)] = 100
) -> dict[str, Any]:
    """Who did what and when: cancels, redrives, edits, deletes, purges, breaker resets."""
    return {"items": [r.to_public() for r in await audit.read(app, limit)]}


@probes.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get(
    "/readyz",
    summary="Readiness: the backend answers",
    responses={503: {"description": "The backend is unreachable."}},
)
async def readyz(request: Request) -> Any:
    app: App = request.app.state.genqueue
    try:
        await app.open()
        await app.backend.time()
        await app.backend.state_get("workers")
    except Exception as exc:  # any failure to reach storage means not ready
        return JSONResponse(
            {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}, status_code=503
        )
    return {"status": "ok"}
