"""The web dashboard: server-rendered pages over the genqueue Python API.

Needs the ``service`` extra (FastAPI, Jinja2, itsdangerous); import
``genqueue.service.dashboard.router`` only when serving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

    from genqueue.app import App
    from genqueue.service.settings import ServiceSettings

__all__ = ["dashboard_router"]


def dashboard_router(app: App, settings: ServiceSettings) -> APIRouter:
    """The dashboard's routes, served at ``/`` (imports FastAPI and Jinja2 lazily)."""
    try:
        from genqueue.service.dashboard.router import dashboard_router as build
    except ImportError as exc:
        from genqueue.errors import MissingExtra

        raise MissingExtra(exc.name or "fastapi", "service") from exc
    return build(app, settings)
