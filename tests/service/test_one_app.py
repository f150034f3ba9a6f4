"""``create_app`` serves the JSON API, the dashboard and /metrics side by side."""

from __future__ import annotations

import httpx

from tests.service.conftest import ADMIN


async def test_api_dashboard_and_metrics_in_one_app(client: httpx.AsyncClient) -> None:
    login = await client.get("/login")
    assert login.status_code == 200 and "text/html" in login.headers["content-type"]
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert (await client.get("/dlq")).status_code in (302, 303, 307)  # login first
    api = await client.get("/api/v1/dlq", headers={"Authorization": f"Bearer {ADMIN}"})
    assert api.status_code == 200 and api.json()["items"] == []
    assert (await client.get("/api/v1/dlq")).status_code == 401
    metrics = await client.get("/metrics/")
    assert metrics.status_code == 200 and "genqueue_build_info" in metrics.text
