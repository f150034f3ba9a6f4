"""/api/v1/dlq: every filter, pages, one entry with its history, redrive (one, bulk by
ids or filter with dry_run), edit-then-redrive, delete, purge, export, stats, analytics."""

from __future__ import annotations

import csv
import io
import json
import math

import httpx

from genqueue import App
from genqueue.classify import ErrorKind
from genqueue.job import JobState
from genqueue.observability.alerts.seen import seen_since
from tests.conformance.helpers import make_dead


async def fill(gq: App) -> dict[str, list[str]]:
    return {
        "server": await make_dead(gq, 4, task="t.a", user_id="u1", kind=ErrorKind.SERVER),
        "auth": await make_dead(
            gq, 3, task="t.b", user_id="u2", kind=ErrorKind.AUTH, message="bad key", offset=100
        ),
    }


async def listed(http: httpx.AsyncClient, admin: dict[str, str], **params: object) -> list[str]:
    response = await http.get("/api/v1/dlq", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return [e["job_id"] for e in response.json()["items"]]


async def test_list_every_filter_and_cursor(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    assert len(await listed(client, admin)) == 7
    assert sorted(await listed(client, admin, user="u2")) == sorted(ids["auth"])
    assert sorted(await listed(client, admin, kind="auth")) == sorted(ids["auth"])
    assert sorted(await listed(client, admin, task="t.a")) == sorted(ids["server"])
    assert len(await listed(client, admin, queue="dlqtest")) == 7
    assert await listed(client, admin, queue="nope") == []
    one = (await client.get(f"/api/v1/dlq/{ids['auth'][0]}", headers=admin)).json()
    assert sorted(await listed(client, admin, fingerprint=one["fingerprint"])) == sorted(
        ids["auth"]
    )
    pivot = one["failed_at"]  # ISO; the auth entries failed 100 s after the server ones
    since = await listed(client, admin, since=pivot)
    until = await listed(client, admin, until=pivot)
    assert ids["auth"][0] in since and ids["auth"][0] not in until
    assert len(since) + len(until) == 7
    assert len(await listed(client, admin, since="30d")) == 7
    first = (await client.get("/api/v1/dlq", params={"limit": 4}, headers=admin)).json()
    rest = await listed(client, admin, limit=4, cursor=first["next_cursor"])
    assert len(first["items"]) == 4 and len(rest) == 3
    assert not {e["job_id"] for e in first["items"]} & set(rest)
    bad = await client.get("/api/v1/dlq", params={"kind": "nope"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "kind"
    bad = await client.get("/api/v1/dlq", params={"since": "yesterday"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["field"] == "since"
    bad = await client.get("/api/v1/dlq", params={"cursor": "!!"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


async def test_entry_shows_its_attempt_history(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    assert await seen_since(gq, math.inf) == 0
    entry = (await client.get(f"/api/v1/dlq/{ids['server'][0]}", headers=admin)).json()
    assert await seen_since(gq, math.inf) == 1  # shown on its own: marked as looked at
    assert entry == (await gq.dlq.get(ids["server"][0])).to_public()
    assert entry["error_kind"] == "server" and entry["history"]
    assert entry["last_error"]["message"] == "upstream 500"
    missing = await client.get("/api/v1/dlq/" + "a" * 32, headers=admin)
    assert missing.status_code == 404


async def test_redrive_one_and_bulk_with_dry_run_first(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    one = await client.post(f"/api/v1/dlq/{ids['server'][0]}/redrive", headers=admin)
    assert one.status_code == 200 and one.json()["state"] == "queued"
    assert one.json()["redrive_count"] == 1
    body = {"filter": {"kind": "auth"}, "dry_run": True}
    dry = (await client.post("/api/v1/dlq/redrive", json=body, headers=admin)).json()
    assert dry["dry_run"] and dry["matched"] == 3 and len(dry["sample"]) == 3
    assert await gq.dlq.count() == 6  # nothing changed
    done = (
        await client.post("/api/v1/dlq/redrive", json={"filter": {"kind": "auth"}}, headers=admin)
    ).json()
    assert done["redriven"] == 3 and await gq.dlq.count() == 3
    by_ids = await client.post(
        "/api/v1/dlq/redrive", json={"ids": ids["server"][1:3]}, headers=admin
    )
    assert by_ids.json()["redriven"] == 2
    both = await client.post(
        "/api/v1/dlq/redrive", json={"ids": ids["server"], "all": True}, headers=admin
    )
    assert both.status_code == 400 and both.json()["field"] == "ids"
    neither = await client.post("/api/v1/dlq/redrive", json={}, headers=admin)
    assert neither.status_code == 400
    actions = [
        r["action"] for r in (await client.get("/api/v1/audit", headers=admin)).json()["items"]
    ]
    assert actions == ["dlq.redrive"] * 3  # the dry run is not a change


async def test_edit_then_redrive_replaces_data_and_is_audited(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    url = f"/api/v1/dlq/{ids['server'][0]}/edit-redrive"
    refused = await client.post(url, json={"data": {"api_key": "sk-1"}}, headers=admin)
    assert refused.status_code == 400 and refused.json()["field"] == "data.api_key"
    assert await gq.dlq.count() == 7  # a rejected edit changes nothing
    done = await client.post(url, json={"data": {"prompt": "fixed"}}, headers=admin)
    assert done.status_code == 200 and done.json()["data"] == {"prompt": "fixed"}
    job = await gq.get(ids["server"][0])
    assert job.state is JobState.QUEUED and job.data == {"prompt": "fixed"}
    record = (await client.get("/api/v1/audit", headers=admin)).json()["items"][0]
    assert record["action"] == "dlq.edit_redrive" and record["target"] == job.id
    assert record["details"]["old_data_digest"] != record["details"]["new_data_digest"]
    again = await client.post(url, json={"data": 1}, headers=admin)
    assert again.status_code == 404


async def test_delete_by_ids_and_by_filter(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    ghost = "b" * 32
    dry = await client.post(
        "/api/v1/dlq/delete",
        json={"ids": [ids["server"][0], ghost], "dry_run": True},
        headers=admin,
    )
    assert dry.json()["matched"] == 1 and dry.json()["not_found"] == [ghost]
    assert await gq.dlq.count() == 7
    done = await client.post(
        "/api/v1/dlq/delete", json={"ids": [ids["server"][0], ghost]}, headers=admin
    )
    assert done.json()["deleted_ids"] == [ids["server"][0]] and await gq.dlq.count() == 6
    body = {"filter": {"user": "u2"}, "dry_run": True}
    dry = (await client.post("/api/v1/dlq/delete", json=body, headers=admin)).json()
    assert dry["matched"] == 3 and len(dry["sample"]) == 3 and dry["deleted"] == 0
    limited = {"filter": {"user": "u2"}, "limit": 1}
    assert (await client.post("/api/v1/dlq/delete", json=limited, headers=admin)).json()[
        "deleted"
    ] == 1
    rest = (
        await client.post("/api/v1/dlq/delete", json={"filter": {"user": "u2"}}, headers=admin)
    ).json()
    assert rest["deleted"] == 2 and await gq.dlq.count() == 3


async def test_purge_needs_a_filter_all_or_expired(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    await fill(gq)
    refused = await client.post("/api/v1/dlq/purge", json={}, headers=admin)
    assert refused.status_code == 400 and refused.json()["field"] == "filter"
    dry = await client.post("/api/v1/dlq/purge", json={"all": True, "dry_run": True}, headers=admin)
    assert dry.json() == {"dry_run": True, "count": 7}
    expired = await client.post("/api/v1/dlq/purge", json={"expired": True}, headers=admin)
    assert expired.json()["count"] == 0
    some = await client.post("/api/v1/dlq/purge", json={"filter": {"task": "t.b"}}, headers=admin)
    assert some.json() == {"dry_run": False, "count": 3} and await gq.dlq.count() == 4
    rest = await client.post("/api/v1/dlq/purge", json={"all": True}, headers=admin)
    assert rest.json()["count"] == 4 and await gq.dlq.count() == 0


async def test_export_streams_jsonl_and_csv(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    ids = await fill(gq)
    jsonl = await client.get("/api/v1/dlq/export", params={"kind": "auth"}, headers=admin)
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith(
        "application/x-ndjson"
    )
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert sorted(e["job_id"] for e in lines) == sorted(ids["auth"])
    csv_text = await client.get("/api/v1/dlq/export", params={"format": "csv"}, headers=admin)
    rows = list(csv.DictReader(io.StringIO(csv_text.text)))
    assert len(rows) == 7 and {r["error_kind"] for r in rows} == {"server", "auth"}
    bad = await client.get("/api/v1/dlq/export", params={"format": "xml"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "format"


async def test_stats_and_analytics(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App
) -> None:
    await fill(gq)
    stats = (await client.get("/api/v1/dlq/stats", headers=admin)).json()
    assert stats["total"] == 7 and stats["by_error_kind"] == {"server": 4, "auth": 3}
    assert stats["top_fingerprints"][0]["count"] == 4
    only = (await client.get("/api/v1/dlq/stats", params={"user": "u2"}, headers=admin)).json()
    assert only["total"] == 3
    analytics = await client.get("/api/v1/analytics", params={"window": "1d"}, headers=admin)
    assert (
        analytics.status_code == 200 and analytics.json() == (await gq.analytics(86400)).to_dict()
    )
    bad = await client.get("/api/v1/analytics", params={"window": "10s"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["field"] == "window"
