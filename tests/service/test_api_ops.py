"""/api/v1 operations: queues, breakers, workers, audit, health probes; /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from genqueue import App
from genqueue.presence import WorkerInfo, beat
from genqueue.service.app import create_app
from tests.service.conftest import service_settings


async def test_queues_counts_per_state_and_dead_letters(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    await gq.enqueue("t.echo", 1)
    await gq.enqueue("t.other", 2, delay=60)
    body = (await client.get("/api/v1/queues", headers=admin)).json()
    assert body["queues"]["default"]["queued"] == 1
    assert body["queues"]["other"]["scheduled"] == 1
    assert body["dead_letters"] == 0


async def test_breakers_list_and_reset_of_an_unknown_account(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert (await client.get("/api/v1/breakers", headers=admin)).json() == {"items": []}
    missing = await client.post("/api/v1/breakers/nobody/reset", headers=admin)
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]


async def test_workers_lists_live_heartbeats(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    now = await gq.backend.time()
    await beat(gq, WorkerInfo("w1", ("default",), 4, 1, now, now), 30)
    items = (await client.get("/api/v1/workers", headers=admin)).json()["items"]
    assert [w["id"] for w in items] == ["w1"] and items[0]["busy"] == 1


async def test_probes_and_metrics(client: httpx.AsyncClient, gq: App) -> None:
    assert (await client.get("/api/v1/healthz")).json() == {"status": "ok"}
    assert (await client.get("/api/v1/readyz")).json() == {"status": "ok"}
    metrics = await client.get("/metrics/")
    assert metrics.status_code == 200 and "genqueue_build_info" in metrics.text


async def test_readyz_is_503_when_the_backend_is_unreachable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    app = App(f"sqlite:///{tmp_path}/a-file/x.db")  # a file where its directory should be
    asgi = create_app(app, service_settings())
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/api/v1/readyz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


async def test_openapi_schema_documents_every_route(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/dlq/{job_id}/edit-redrive" in schema["paths"]
    submit = schema["paths"]["/api/v1/jobs"]["post"]
    assert {"202", "400", "401", "403", "413", "422"} <= set(submit["responses"])
