"""``dashboard_router``: the server-rendered web dashboard, served at ``/``.

Pages read the genqueue Python API directly (no HTTP round trip through the JSON API).
This module owns login/logout, the routes of the overview (``overview`` gathers what it
shows), the jobs pages, the audit log and the static files; ``dlq`` owns the dead letter
pages and their actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genqueue.job import JobState
from genqueue.service import audit
from genqueue.service.dashboard import dlq, overview
from genqueue.service.dashboard.csrf import verify
from genqueue.service.dashboard.session import Sessions
from genqueue.service.dashboard.web import (
    HERE,
    DashboardRoute,
    field,
    page,
    read_form,
    redirect,
)

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.service.settings import ServiceSettings

STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
JOB_PAGE = 50


@dataclass
class Dashboard:
    app: App
    settings: ServiceSettings
    sessions: Sessions


def dashboard_router(app: App, settings: ServiceSettings) -> APIRouter:
    """The dashboard's routes; include them in a FastAPI app whose lifespan opens ``app``."""
    board = Dashboard(app, settings, Sessions(settings))
    router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
    _add_login(router, board)
    _add_pages(router, board)
    dlq.add_routes(router, board.app, board.sessions)
    return router


def _safe_next(target: str) -> str:
    # Only paths on this site: "//host" and "/\host" would leave it.
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _add_login(router: APIRouter, board: Dashboard) -> None:
    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return page(
            request,
            "login.html",
            next=_safe_next(request.query_params.get("next", "/")),
            open_access=board.settings.admin_token is None,
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        target = _safe_next(field(form, "next") or "/")
        if not board.sessions.token_ok(field(form, "token")):
            return page(
                request,
                "login.html",
                401,
                next=target,
                error="That is not the admin token.",
                open_access=False,
            )
        response = redirect(request, target)
        board.sessions.start(response, request)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = board.sessions.require(request)
        verify(request, session, await read_form(request))
        response = redirect(request, "/login")
        board.sessions.end(response, request)
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        body = (HERE / "static" / name).read_bytes()
        return Response(body, media_type=STATIC[name])


def _add_pages(router: APIRouter, board: Dashboard) -> None:
    app = board.app

    @router.get("/")
    async def overview_page(request: Request) -> Response:
        session = board.sessions.require(request)
        return page(request, "overview.html", session=session, **await overview.gather(app))

    @router.get("/jobs")
    async def jobs(request: Request) -> Response:
        session = board.sessions.require(request)
        params = request.query_params
        filters = {k: params.get(k, "").strip() for k in ("state", "queue", "task", "user")}
        found = await app.queue.list(
            state=filters["state"] or None,
            queue=filters["queue"] or None,
            task=filters["task"] or None,
            user_id=filters["user"] or None,
            cursor=params.get("cursor") or None,
            limit=JOB_PAGE,
        )
        return page(
            request,
            "jobs.html",
            session=session,
            jobs=found.items,
            next_cursor=found.next_cursor,
            filters=filters,
            states=[s.value for s in JobState],
        )

    @router.get("/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> Response:
        session = board.sessions.require(request)
        found = await app.queue.get(job_id)
        return page(
            request,
            "job.html",
            session=session,
            job=found,
            data=dlq.shown_data(app, found.data),
            in_dlq=found.state is JobState.DEAD,
        )

    @router.get("/audit")
    async def audit_log(request: Request) -> Response:
        session = board.sessions.require(request)
        return page(request, "audit.html", session=session, entries=await audit.entries(app))
