"""/api/v1/jobs: submit, get, list with every filter and cursor pages, cancel; field-named
errors; nothing stored on a rejected request."""

from __future__ import annotations

import httpx

from genqueue import App, FakeClock
from genqueue.job import JobState
from tests.service.conftest import ALICE, BOB, auth


async def submit(http: httpx.AsyncClient, token: str, **body: object) -> httpx.Response:
    return await http.post("/api/v1/jobs", json={"task": "t.echo", **body}, headers=auth(token))


async def test_submit_answers_202_with_location_and_the_cli_fields(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    response = await client.post(
        "/api/v1/jobs",
        json={"task": "t.echo", "data": {"prompt": "a cat"}, "user_id": "u1", "max_retries": 2},
        headers=admin,
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{body['id']}"
    stored = await gq.get(body["id"])
    assert body == stored.to_public()  # the CLI's --json shape, field for field
    assert body["data"] == {"prompt": "a cat"} and body["max_retries"] == 2
    assert body["state"] == "queued" and body["meta"]["submitted_by"] == "admin"
    got = await client.get(response.headers["location"], headers=admin)
    assert got.status_code == 200 and got.json()["id"] == body["id"]


async def test_delay_schedules_and_idempotency_key_dedupes(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    first = await submit(client, ALICE, data=1, delay=60, idempotency_key="k1")
    again = await submit(client, ALICE, data=1, delay=60, idempotency_key="k1")
    assert first.json()["state"] == "scheduled"
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    conflict = await submit(client, ALICE, data=2, idempotency_key="k1")
    assert conflict.status_code == 409 and conflict.json()["field"] == "idempotency_key"
    # Keys are per submitter: bob's k1 is another job, and he never sees alice's.
    bobs = await submit(client, BOB, data=1, delay=60, idempotency_key="k1")
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]


async def test_a_client_sees_only_its_own_jobs(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    alices = (await submit(client, ALICE, data="a")).json()
    assert alices["meta"]["submitted_by"] == "alice"
    url = f"/api/v1/jobs/{alices['id']}"
    assert (await client.get(url, headers=auth(ALICE))).status_code == 200
    assert (await client.get(url, headers=auth(BOB))).status_code == 404
    assert (await client.post(url + "/cancel", headers=auth(BOB))).status_code == 404
    assert (await client.get(url, headers=admin)).status_code == 200
    assert (await client.get("/api/v1/jobs", headers=auth(ALICE))).status_code == 403
    cancelled = await client.post(url + "/cancel", headers=auth(ALICE))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


async def test_list_filters_and_cursor_pages(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    for i in range(5):
        await submit(client, ALICE, data=i, user_id="u1" if i % 2 else "u2")
    await client.post("/api/v1/jobs", json={"task": "t.other", "data": 9}, headers=admin)
    scheduled = (await submit(client, ALICE, data=7, delay=30)).json()

    async def ids(**params: object) -> list[str]:
        response = await client.get("/api/v1/jobs", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["items"]]

    assert len(await ids()) == 7
    assert len(await ids(user_id="u1")) == 2
    assert len(await ids(task="t.other")) == 1
    assert len(await ids(queue="other")) == 1
    assert await ids(state="scheduled") == [scheduled["id"]]
    assert len(await ids(state=["scheduled", "queued"])) == 7
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/jobs", params=params, headers=admin)).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 == len(set(seen))
    bad = await client.get("/api/v1/jobs", params={"state": "nope"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "state"
    bad = await client.get("/api/v1/jobs", params={"since": "yesterday"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["field"] == "since"


async def test_list_by_creation_time(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App, clock: FakeClock
) -> None:
    old = (await submit(client, ALICE, data=1)).json()
    clock.advance(3600)
    new = (await submit(client, ALICE, data=2)).json()

    async def ids(**params: object) -> list[str]:
        response = await client.get("/api/v1/jobs", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["items"]]

    assert await ids(since="30m") == [new["id"]]  # an age: that long before now
    assert await ids(until="30m") == [old["id"]]
    assert await ids(since=str(clock.now() - 60), until=str(clock.now() + 1)) == [new["id"]]
    assert await ids(until=old["created_at"]) == []  # exclusive


async def test_cancel_is_audited_and_refused_once_finished(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    job = (await submit(client, ALICE)).json()
    url = f"/api/v1/jobs/{job['id']}/cancel"
    done = await client.post(url, json={"reason": "changed my mind"}, headers=admin)
    assert done.status_code == 200 and done.json()["meta"]["cancel_reason"] == "changed my mind"
    again = await client.post(url, headers=admin)
    assert again.status_code == 409 and "cancelled" in again.json()["error"]
    log = (await client.get("/api/v1/audit", headers=admin)).json()["items"]
    assert log[0]["action"] == "job.cancel" and log[0]["target"] == job["id"]
    assert log[0]["who"] == "admin" and log[0]["at"].endswith("Z")


async def test_bad_input_names_the_field_and_stores_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    cases = [
        ({"task": "no.such.task"}, 400, "task"),
        ({"task": "t.echo", "delay": -1}, 422, "delay"),
        ({"task": "t.echo", "max_retries": 5000}, 422, "max_retries"),
        ({"task": "t.echo", "user_id": ""}, 422, "user_id"),
        ({"task": "t.echo", "surprise": 1}, 422, "surprise"),
        ({"data": 1}, 422, "task"),
        ({"task": "t.echo", "data": {"api_key": "sk-123"}}, 400, "data.api_key"),
    ]
    for body, status, field in cases:
        response = await client.post("/api/v1/jobs", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
        assert response.json()["error"]
    raw = await client.post(
        "/api/v1/jobs",
        content=b"{not json",
        headers={**admin, "content-type": "application/json"},
    )
    assert raw.status_code == 422 and raw.json()["field"] == "body"
    bad_id = await client.get("/api/v1/jobs/xyz", headers=admin)
    assert bad_id.status_code == 422 and bad_id.json()["field"] == "job_id"
    missing = await client.get("/api/v1/jobs/" + "0" * 32, headers=admin)
    assert missing.status_code == 404 and "error" in missing.json()
    assert (await gq.list_jobs()).items == []
    assert not any(
        state for queues in (await gq.backend.counts()).values() for state in queues.values()
    )
    assert JobState.QUEUED.value == "queued"


async def test_bodies_over_the_limit_are_refused_with_413(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    big = {"task": "t.echo", "data": "x" * 10_000}
    declared = await client.post("/api/v1/jobs", json=big, headers=admin)
    assert declared.status_code == 413 and declared.json()["field"] == "body"

    async def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * 1000

    streamed = await client.post(
        "/api/v1/jobs", content=chunks(), headers={**admin, "content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "8192 bytes" in streamed.json()["error"]
    assert (await gq.list_jobs()).items == []
