"""PixelLab: the v2 client, its route table, and the built-in ``pixellab.generate`` task.

``register(app)`` adds the task to an app. Job data is ``{"operation": <route>,
"params": <PixelLab request body>}``; the API key comes from ``PIXELLAB_API_KEY`` (or
``PixelLabSettings``) and is only ever put in the Authorization header.
"""

from __future__ import annotations

from genqueue.app import App
from genqueue.providers.pixellab.client import PixelLabClient
from genqueue.providers.pixellab.routes import Route, route_for, routes
from genqueue.providers.pixellab.task import TASK, PixelLab, PixelLabSettings

__all__ = [
    "TASK",
    "PixelLab",
    "PixelLabClient",
    "PixelLabSettings",
    "Route",
    "register",
    "route_for",
    "routes",
]


def register(app: App, settings: PixelLabSettings | None = None) -> PixelLab:
    integration = PixelLab(app, settings)
    integration.register()
    return integration
