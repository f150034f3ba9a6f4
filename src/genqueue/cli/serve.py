"""``genqueue serve``: the HTTP API, dashboard and ``/metrics``, with in-process workers.

FastAPI and uvicorn are imported here, inside the command, so every other command starts
without them (they come with ``pip install 'genqueue[service]'``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from genqueue.cli.common import AppOpt, BackendOpt, load_app, out
from genqueue.errors import MissingExtra


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (non-loopback needs an admin token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Serve only; run workers elsewhere.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Jobs the in-process worker runs at once.")
    ] = 10,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
    backend: BackendOpt = None,
    app_path: AppOpt = None,
) -> None:
    """Serve the JSON API (/api/v1), the dashboard and /metrics.

    Tokens come from the environment: GENQUEUE_ADMIN_TOKEN (everything) and
    GENQUEUE_CLIENT_TOKENS=name:token,... (submit and read own jobs)."""
    if not 0 <= port <= 65535:
        raise typer.BadParameter("must be between 0 and 65535", param_hint="--port")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    from genqueue.service.settings import ServiceSettings
    from genqueue.settings import WorkerSettings

    settings = ServiceSettings.from_env(host=host, port=port, workers=not no_workers)
    worker_settings = WorkerSettings(concurrency=concurrency)
    try:
        import uvicorn

        from genqueue.service.app import create_app
    except ImportError as exc:
        raise MissingExtra(exc.name or "fastapi", "service") from None
    app = load_app(app_path, backend)
    asgi = create_app(app, settings, worker_settings=worker_settings)
    workers = "no workers" if no_workers else f"a worker (concurrency {concurrency})"
    out.print(f"serving {app.backend.url} at http://{host}:{port}/ with {workers}")
    if settings.admin_token is None:
        out.print("no GENQUEUE_ADMIN_TOKEN set: only client tokens can call the API")
    uvicorn.run(asgi, host=host, port=port, log_level=log_level.lower(), access_log=False)
