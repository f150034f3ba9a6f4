"""A genqueue app and a minimal FastAPI app around the dashboard, for the dashboard tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from genqueue import App, JobContext, Worker, WorkerSettings
from genqueue.clock import Clock
from genqueue.service.dashboard import dashboard_router
from genqueue.service.settings import ServiceSettings

ADMIN = "admin-token-0123456789abcdef"


class Provider:
    """Stands for a flaky provider: while ``down``, jobs asking to fail fail."""

    def __init__(self) -> None:
        self.down = True


def make_app(url: str, clock: Clock | None = None) -> tuple[App, Provider]:
    app = App(url, clock=clock)
    provider = Provider()

    @app.task("images.generate", queue="images", max_retries=0)
    async def generate(ctx: JobContext) -> dict[str, Any]:
        data = ctx.data or {}
        if data.get("fail") and provider.down:
            raise RuntimeError(f"upstream exploded: {data.get('msg', 'no detail')}")
        return {"ok": True}

    return app, provider


def web_app(app: App, settings: ServiceSettings | None = None, *, worker: bool = False) -> FastAPI:
    """The dashboard in a FastAPI app that opens ``app`` (and runs a worker, if asked)."""
    settings = settings or ServiceSettings(admin_token=ADMIN, session_secret="s" * 32)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with app:
            if not worker:
                yield
                return
            running = Worker(app, settings=WorkerSettings(concurrency=4, poll_interval=0.05))
            task = asyncio.create_task(running.run())
            try:
                yield
            finally:
                running.request_stop()
                await task

    web = FastAPI(lifespan=lifespan)
    web.include_router(dashboard_router(app, settings))
    return web
