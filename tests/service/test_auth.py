"""Every /api/v1 route, read from the app's route table, refuses a missing or unknown
token with 401; admin routes refuse a client token with 403; client routes answer 404
for another client's job."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute

from genqueue import App
from genqueue.service.app import create_app
from tests.service.conftest import ALICE, BOB, auth, service_settings

OPEN = {"/api/v1/healthz", "/api/v1/readyz"}
CLIENT_ROUTES = {
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"),
    ("POST", "/api/v1/jobs/{job_id}/cancel"),
}
JOB_ID = "c" * 32


def api_routes(gq: App) -> list[tuple[str, str]]:
    """(method, path) of every API route in the app's route table."""
    asgi = create_app(gq, service_settings())
    try:  # FastAPI >= 0.16x keeps included routers as one entry; this walks them
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies every route into app.routes
        table = [(r.path, r.methods) for r in asgi.routes if isinstance(r, APIRoute)]
    else:
        table = [
            (c.path, c.methods)
            for c in iter_route_contexts(asgi.routes)
            if isinstance(c.original_route, APIRoute)
        ]
    found = [
        (method, path)
        for path, methods in table
        if path.startswith("/api/v1")
        for method in sorted(methods)
    ]
    assert len(found) >= 20  # the table really was read
    return found


def concrete(path: str, job_id: str = JOB_ID) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: job_id if m.group(1) == "job_id" else "acct", path)


async def test_every_route_needs_a_token_and_the_right_role(
    client: httpx.AsyncClient, gq: App
) -> None:
    routes = api_routes(gq)
    assert set(routes) >= CLIENT_ROUTES
    for method, path in routes:
        url = concrete(path)
        if path in OPEN:
            assert (await client.request(method, url)).status_code == 200
            continue
        none = await client.request(method, url, json={})
        assert none.status_code == 401, (method, path)
        assert none.headers["www-authenticate"] == "Bearer" and none.json()["error"]
        wrong = await client.request(method, url, json={}, headers=auth("not-a-token-at-all!"))
        assert wrong.status_code == 401, (method, path)
        as_client = await client.request(method, url, json={}, headers=auth(ALICE))
        if (method, path) in CLIENT_ROUTES:
            assert as_client.status_code not in (401, 403), (method, path)
        else:
            assert as_client.status_code == 403, (method, path)


async def test_client_routes_answer_404_for_another_clients_job(
    client: httpx.AsyncClient, gq: App
) -> None:
    made = await client.post(
        "/api/v1/jobs", json={"task": "t.echo", "data": 1}, headers=auth(ALICE)
    )
    job_id = made.json()["id"]
    for method, path in sorted(CLIENT_ROUTES):
        if "{job_id}" not in path:
            continue
        response = await client.request(method, concrete(path, job_id), headers=auth(BOB))
        assert response.status_code == 404, (method, path)
    assert (await gq.get(job_id)).state.value == "queued"  # bob's cancel did nothing
