"""``genqueue serve`` refuses an open bind without an admin token (one line, exit 1), and
the app's lifespan runs an in-process worker that completes submitted jobs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from genqueue.cli.main import run
from genqueue.service.app import create_app
from genqueue.settings import WorkerSettings
from tests.service.conftest import ADMIN, auth, make_app, service_settings


def test_serve_refuses_a_public_bind_without_an_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("GENQUEUE_ADMIN_TOKEN", raising=False)
    code = run(["serve", "--host", "0.0.0.0", "--backend", f"sqlite:///{tmp_path / 'x.db'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "refusing to listen on 0.0.0.0" in err
    assert "Traceback" not in err


async def test_lifespan_runs_a_worker_that_completes_submitted_jobs(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'serve.db'}")
    asgi = create_app(
        app,
        service_settings(workers=True),
        worker_settings=WorkerSettings(concurrency=2, poll_interval=0.01, shutdown_grace=1),
    )
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            made = await http.post(
                "/api/v1/jobs", json={"task": "t.echo", "data": {"n": 1}}, headers=auth(ADMIN)
            )
            assert await app.wait(made.json()["id"], timeout=30) == {"n": 1}
            job = (await http.get(made.headers["location"], headers=auth(ADMIN))).json()
    assert job["state"] == "completed" and job["result"] == {"n": 1}
