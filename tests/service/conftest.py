"""An HTTP client on ``create_app`` over SQLite and Redis, with admin and client tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genqueue import App, FakeClock, JobContext
from genqueue.service.app import create_app
from genqueue.service.settings import ServiceSettings
from tests.conftest import BACKENDS, backend_url

ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
MAX_BODY = 8192
SERVICE_BACKENDS = [b for b in ("sqlite", "redis") if b in BACKENDS]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def service_settings(**changes: Any) -> ServiceSettings:
    options: dict[str, Any] = {
        "admin_token": ADMIN,
        "client_tokens": {"alice": ALICE, "bob": BOB},
        "workers": False,
        "max_body": MAX_BODY,
        **changes,
    }
    return ServiceSettings(**options)


def make_app(url: str, clock: FakeClock | None = None) -> App:
    app = App(url, clock=clock)

    @app.task("t.echo")
    async def echo(ctx: JobContext) -> Any:
        return ctx.data

    @app.task("t.other", queue="other")
    async def other(ctx: JobContext) -> Any:
        return ctx.data

    return app


@pytest.fixture(params=SERVICE_BACKENDS)
async def gq(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[App]:
    app = make_app(backend_url(str(request.param), tmp_path), clock)
    async with app:
        yield app


@pytest.fixture
async def client(gq: App) -> AsyncIterator[httpx.AsyncClient]:
    asgi = create_app(gq, service_settings())
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def admin() -> dict[str, str]:
    return auth(ADMIN)
