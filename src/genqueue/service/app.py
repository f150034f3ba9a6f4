"""``create_app``: one ASGI app with the JSON API, the dashboard and ``/metrics``.

Everything the app needs hangs off ``app.state`` (the genqueue app, the settings), so
several can live in one process and the app can be mounted inside a user's own ASGI app.
Its lifespan opens the genqueue app, installs the metrics and, when
``settings.workers``, runs a worker in the same event loop (stopped gracefully on
shutdown). Mounted inside another app (whose lifespan does not run ours), routes open the
genqueue app on first use; run workers separately then (``genqueue worker``), or enter
``asgi.router.lifespan_context(asgi)`` from your own lifespan.

The dashboard (``genqueue.service.dashboard``) is mounted at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI

from genqueue.service.api import dlq, jobs, ops
from genqueue.service.errors import ERROR_RESPONSES, install_error_handlers
from genqueue.service.limits import BodyLimit
from genqueue.service.settings import ServiceSettings

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.settings import WorkerSettings

API_PREFIX = "/api/v1"
log = logging.getLogger("genqueue.service")


def create_app(
    app: App,
    settings: ServiceSettings | None = None,
    *,
    worker_settings: WorkerSettings | None = None,
    queues: list[str] | None = None,
) -> FastAPI:
    """The ASGI app serving ``app``: ``/api/v1``, the dashboard, ``/metrics``."""
    settings = settings or ServiceSettings.from_env()
    from genqueue.observability.metrics import Metrics
    from genqueue.providers.metrics import provider_readings

    stale_after = worker_settings.lease_seconds if worker_settings else 30.0
    metrics = Metrics(app, sources=[provider_readings], worker_stale_after=stale_after)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with app:
            metrics.install()
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(metrics.run(), name="genqueue-metrics")
            ]
            worker = None
            if settings.workers:
                from genqueue.worker import Worker

                worker = Worker(app, queues=queues, settings=worker_settings)
                tasks.append(asyncio.create_task(worker.run(), name="genqueue-worker"))
                log.info("worker %s running in the server process", worker.id)
            try:
                yield
            finally:
                if worker is not None:
                    worker.request_stop()
                    with contextlib.suppress(Exception):
                        await tasks.pop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                metrics.uninstall()

    asgi = FastAPI(
        title="genqueue",
        summary="Submit AI generation jobs; find, understand and fix every dead letter.",
        version="1",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    asgi.state.genqueue = app
    asgi.state.service_settings = settings
    install_error_handlers(asgi)
    api = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    api.include_router(jobs.router)
    api.include_router(dlq.router)
    api.include_router(ops.router)
    api.include_router(ops.probes)
    asgi.include_router(api)
    asgi.mount("/metrics", metrics.asgi_app(), name="metrics")
    _mount_dashboard(asgi, app, settings)
    asgi.add_middleware(BodyLimit, max_body=settings.max_body)
    return asgi


def _mount_dashboard(asgi: FastAPI, app: App, settings: ServiceSettings) -> None:
    from genqueue.service.dashboard import dashboard_router

    asgi.include_router(dashboard_router(app, settings))
