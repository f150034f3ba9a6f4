"""GET /api/v1/alerts on SQLite and Redis: the alerts the evaluator stored, in the shape
of ``genqueue alerts list --json``, filtered by state; a bad state is a 422 naming it."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import httpx

from genqueue import App, FakeClock
from genqueue.cli.alerts import list_command
from genqueue.observability.alerts import MAX_RECENT, RECENT, DlqGrowth, DlqSize, list_alerts
from tests.conformance.helpers import make_dead
from tests.observability.alerts_support import evaluator, only


async def one_firing_one_resolved(app: App, clock: FakeClock) -> None:
    """dlq_size fires (2 entries > 1) and stays; dlq_growth fires, then resolves."""
    ev, _ = evaluator(app, only(DlqSize(threshold=1), DlqGrowth(threshold=0)))
    await make_dead(app, 2)
    await ev.step()
    clock.advance(60)
    ev.settings = only(DlqSize(threshold=1), DlqGrowth(threshold=5))
    await ev.step()


async def test_no_evaluation_yet(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.get("/api/v1/alerts", headers=admin)
    assert response.status_code == 200
    assert response.json() == {
        "active": [],
        "recent": [],
        "evaluated_at": None,
        "evaluator": None,
    }


async def test_active_and_resolved_alerts_as_the_cli_shows_them(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App, clock: FakeClock
) -> None:
    await one_firing_one_resolved(gq, clock)
    body = (await client.get("/api/v1/alerts", headers=admin)).json()
    assert body == (await list_alerts(gq.backend)).to_public()  # the CLI's --json
    [active] = body["active"]
    assert {k: active[k] for k in ("rule", "severity", "state", "value", "threshold")} == {
        "rule": "dlq_size",
        "severity": "warning",
        "state": "firing",
        "value": 2,
        "threshold": 1,
    }
    assert active["since"] == "2026-01-01T00:00:00.000Z" and active["resolved_at"] is None
    assert "2 entries in the dead letter queue" in active["summary"]
    [recent] = body["recent"]
    assert (recent["rule"], recent["state"]) == ("dlq_growth", "resolved")
    assert recent["resolved_at"] == "2026-01-01T00:01:00.000Z"
    assert (body["evaluator"], body["evaluated_at"]) == ("w1", "2026-01-01T00:01:00.000Z")


async def test_state_filter_and_limit(
    client: httpx.AsyncClient, admin: dict[str, str], gq: App, clock: FakeClock
) -> None:
    await one_firing_one_resolved(gq, clock)

    async def rules(query: str) -> tuple[list[str], list[str]]:
        body = (await client.get(f"/api/v1/alerts?{query}", headers=admin)).json()
        return [a["rule"] for a in body["active"]], [a["rule"] for a in body["recent"]]

    assert await rules("state=all") == (["dlq_size"], ["dlq_growth"])
    assert await rules("state=firing") == (["dlq_size"], [])
    assert await rules("state=resolved") == ([], ["dlq_growth"])
    assert await rules("limit=0") == (["dlq_size"], [])


async def test_bad_state_or_limit_is_a_422_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for query, field in (
        ("state=open", "state"),
        ("state=", "state"),
        ("limit=-1", "limit"),
        (f"limit={MAX_RECENT + 1}", "limit"),
    ):
        response = await client.get(f"/api/v1/alerts?{query}", headers=admin)
        assert response.status_code == 422, query
        assert response.json()["field"] == field, query


async def test_documented_in_the_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/v1/openapi.json")).json()
    answers = schema["paths"]["/api/v1/alerts"]["get"]["responses"]
    assert answers["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Alerts"
    }
    alert = schema["components"]["schemas"]["Alert"]
    assert {"rule", "severity", "state", "since", "value", "threshold", "summary"} <= set(
        alert["required"]
    )
    assert {"401", "403", "422"} <= set(answers)


def test_the_cli_limit_matches_the_api() -> None:
    assert inspect.signature(list_command).parameters["limit"].default == RECENT
    hint = get_type_hints(list_command, include_extras=True)["limit"]
    [info] = hint.__metadata__  # typer's Option, with the bounds
    assert (info.min, info.max) == (0, MAX_RECENT)
