"""PixelLab: the v2 client, its route table, and the built-in ``pixellab.generate`` task.

``register(app)`` adds the task to an app. Job data is ``{"operation": <route>,
"params": <PixelLab request body>}``; the API key comes from ``PIXELLAB_API_KEY`` (or
``PixelLabSettings``) and is only ever put in the Authorization header.

Names are imported on first use (PEP 562): an app that only lists or inspects jobs (the
command line) does not load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from genqueue.providers.pixellab.settings import TASK, PixelLabSettings

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.context import JobContext
    from genqueue.providers.pixellab.client import PixelLabClient
    from genqueue.providers.pixellab.routes import Route, route_for, routes
    from genqueue.providers.pixellab.task import PixelLab

__all__ = [
    "TASK",
    "PixelLab",
    "PixelLabClient",
    "PixelLabSettings",
    "Route",
    "register",
    "register_deferred",
    "route_for",
    "routes",
]

_WHERE = {
    "PixelLabClient": "genqueue.providers.pixellab.client",
    "Route": "genqueue.providers.pixellab.routes",
    "route_for": "genqueue.providers.pixellab.routes",
    "routes": "genqueue.providers.pixellab.routes",
    "PixelLab": "genqueue.providers.pixellab.task",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def register(app: App, settings: PixelLabSettings | None = None) -> PixelLab:
    from genqueue.providers.pixellab.task import PixelLab

    integration = PixelLab(app, settings)
    integration.register()
    return integration


def register_deferred(app: App, settings: PixelLabSettings | None = None) -> None:
    """Register ``pixellab.generate`` now and build the integration on its first job.

    For apps that often never run the task (the command line's built-in app): listing
    the dead letter queue should not import the HTTP client and the provider guards.
    """
    settings = settings or PixelLabSettings()
    built: list[PixelLab] = []

    async def generate(ctx: JobContext) -> dict[str, Any]:
        if not built:
            from genqueue.providers.pixellab.task import PixelLab

            built.append(PixelLab(app, settings))
        return await built[0].generate(ctx)

    app.task(TASK, queue=settings.queue, max_retries=settings.max_retries)(generate)
