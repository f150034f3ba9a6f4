"""The dashboard over HTTP (ASGI in process) on SQLite and Redis: login, CSRF, escaping,
every page, the DLQ actions changing state, and the overview's alerts and charts."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genqueue import App, FakeClock, JobState
from genqueue.observability.alerts import DlqSize
from genqueue.observability.alerts.seen import seen_since
from genqueue.service import audit
from genqueue.service.dashboard.session import COOKIE
from genqueue.testing import run_until_idle
from tests.conformance.helpers import make_dead
from tests.conftest import backend_url
from tests.observability.alerts_support import evaluator, only
from tests.service.conftest import SERVICE_BACKENDS
from tests.service.dashboard_app import ADMIN, Provider, make_app, web_app

XSS = "<script>alert(1)</script>"


@pytest.fixture(params=SERVICE_BACKENDS)
async def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[App, Provider]]:
    app, provider = make_app(backend_url(str(request.param), tmp_path), clock=FakeClock())
    async with app:
        yield app, provider


@pytest.fixture
async def client(setup: tuple[App, Provider]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=web_app(setup[0]))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def login(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"token": ADMIN, "next": "/dlq"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dlq"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def dead_jobs(app: App, n: int, **data: Any) -> list[str]:
    jobs = [
        await app.queue.enqueue("images.generate", {"fail": True, **data}, user_id=f"u{i % 2}")
        for i in range(n)
    ]
    await run_until_idle(app)
    return [j.id for j in jobs]


async def test_pages_require_login(client: httpx.AsyncClient, setup: tuple[App, Provider]) -> None:
    [job_id] = await dead_jobs(setup[0], 1)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/dlq", f"/dlq/{job_id}", "/audit"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    refused = await client.post(f"/dlq/{job_id}/retry", data={"csrf": "x"})
    assert refused.status_code == 303
    assert (await setup[0].queue.get(job_id)).state is JobState.DEAD


async def test_wrong_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"token": "not-the-admin-token-at-all"})
    assert response.status_code == 401
    assert COOKIE not in response.cookies
    assert (await client.get("/")).status_code == 303


async def test_forged_cookie_is_refused(client: httpx.AsyncClient) -> None:
    client.cookies.set(COOKIE, "eyJ3aG8iOiJhZG1pbiIsImNzcmYiOiJ4In0.forged.sig")
    assert (await client.get("/")).status_code == 303


async def test_session_cookie_flags(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"token": ADMIN})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


async def test_open_redirect_after_login_is_not_followed(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"token": ADMIN, "next": "//evil.example/x"})
    assert response.headers["location"] == "/"


async def test_every_page_renders_with_security_headers(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    [job_id] = await dead_jobs(setup[0], 1)
    await login(client)
    paths = ["/", "/jobs", "/jobs?state=dead", f"/jobs/{job_id}", "/dlq", f"/dlq/{job_id}"]
    paths += ["/audit", "/dlq?q=exploded", "/dlq?kind=unknown", "/login", "/static/dashboard.css"]
    for path in paths:
        response = await client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    redirect = await client.post("/login", data={"token": "wrong-token-wrong-token"})
    assert "content-security-policy" in redirect.headers


async def test_pages_have_no_inline_script(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    [job_id] = await dead_jobs(setup[0], 1)
    await login(client)
    for path in ("/", "/dlq", f"/dlq/{job_id}"):
        html = (await client.get(path)).text
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, tag
        assert "style=" not in html


async def test_post_without_csrf_is_refused(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    [job_id] = await dead_jobs(app, 1)
    await login(client)
    for data in ({}, {"csrf": "wrong"}):
        for path in (f"/dlq/{job_id}/retry", f"/dlq/{job_id}/delete"):
            response = await client.post(path, data=data)
            assert response.status_code == 403, (path, data)
    bulk = await client.post("/dlq/bulk", data={"action": "delete", "scope": "filter"})
    assert bulk.status_code == 403
    assert (await app.queue.get(job_id)).state is JobState.DEAD
    assert await app.dlq.count() == 1
    assert await audit.entries(app) == []


async def test_post_from_another_origin_is_refused(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    [job_id] = await dead_jobs(setup[0], 1)
    await login(client)
    token = csrf_of((await client.get(f"/dlq/{job_id}")).text)
    response = await client.post(
        f"/dlq/{job_id}/delete", data={"csrf": token}, headers={"origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert await setup[0].dlq.count() == 1


async def test_script_in_data_and_errors_is_escaped(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    job = await app.queue.enqueue(
        "images.generate", {"fail": True, "msg": XSS, "prompt": XSS}, user_id=XSS
    )
    await run_until_idle(app)
    await login(client)
    for path in (f"/dlq/{job.id}", "/dlq", f"/jobs/{job.id}", "/jobs", f"/dlq?user={XSS}"):
        html = (await client.get(path)).text
        assert XSS not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


async def test_payload_secrets_are_redacted(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    [job_id] = await dead_jobs(app, 1, note="key sk-live-abcdefghijklmnop1234", prompt="a cat")
    await login(client)
    html = (await client.get(f"/dlq/{job_id}")).text
    assert "sk-live-abcdefghijklmnop1234" not in html
    assert "[REDACTED]" in html
    assert "a cat" in html


async def test_entry_shows_attempt_timeline(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    [job_id] = await dead_jobs(setup[0], 1, msg="boom-42")
    await login(client)
    html = (await client.get(f"/dlq/{job_id}")).text
    assert await seen_since(setup[0], math.inf) == 1  # opened: marked as looked at
    assert html.count('class="attempt outcome-dead"') == 1
    assert "upstream exploded: boom-42" in html
    assert "RuntimeError" in html  # the stack


async def test_dlq_filters_search_and_groups(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    await dead_jobs(app, 3, msg="quota")
    await dead_jobs(app, 2, msg="timeout talking to gpu")
    await login(client)
    page = (await client.get("/dlq")).text
    assert page.count('class="entry"') == 5
    assert page.count('class="group"') == 2
    searched = (await client.get("/dlq?q=GPU")).text
    assert searched.count('class="entry"') == 2
    assert 'id="search-note"' in searched
    by_user = (await client.get("/dlq?user=u0")).text
    assert by_user.count('class="entry"') == 3  # u0, u1, u0 then u0, u1
    none = (await client.get("/dlq?since=2999-01-01")).text
    assert none.count('class="entry"') == 0
    bad = await client.get("/dlq?kind=nonsense")
    assert bad.status_code == 400
    assert "error_kind" in bad.text or "kind" in bad.text


async def test_search_reads_on_until_the_oldest_match(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    await make_dead(app, 1, message="the needle", offset=-100)  # the oldest entry
    await make_dead(app, 150, message="quota exceeded")
    await login(client)
    found = (await client.get("/dlq?q=NEEDLE")).text
    assert found.count('class="entry"') == 1 and "the needle" in found
    assert re.search(r'id="search-note">Free-text search has no index: it read 151 ', found)
    common = (await client.get("/dlq?q=quota")).text
    assert common.count('class="entry"') == 50 and "it read 50 " in common
    shown = re.findall(r'name="ids" value="([0-9a-f]+)"', common)
    next_link = re.search(r'rel="next" href="([^"]+)"', common)
    assert next_link
    rest = (await client.get(next_link.group(1).replace("&amp;", "&"))).text
    more = re.findall(r'name="ids" value="([0-9a-f]+)"', rest)
    assert len(more) == 50 and not set(shown) & set(more)


async def test_jobs_list_filters_and_pages(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    for i in range(55):
        await app.queue.enqueue("images.generate", {"i": i}, user_id="pager")
    await login(client)
    first = (await client.get("/jobs?user=pager&state=queued")).text
    assert first.count('class="job state-queued"') == 50
    next_link = re.search(r'rel="next" href="([^"]+)"', first)
    assert next_link
    second = (await client.get(next_link.group(1).replace("&amp;", "&"))).text
    assert second.count('class="job state-queued"') == 5
    assert (await client.get("/jobs?state=dead")).text.count('class="job') == 0


async def test_retry_redrives_and_the_job_completes(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app, provider = setup
    [job_id] = await dead_jobs(app, 1)
    await login(client)
    token = csrf_of((await client.get(f"/dlq/{job_id}")).text)
    response = await client.post(f"/dlq/{job_id}/retry", data={"csrf": token})
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert (await app.queue.get(job_id)).state is JobState.QUEUED
    provider.down = False
    await run_until_idle(app)
    assert (await app.queue.get(job_id)).state is JobState.COMPLETED
    [entry] = await audit.entries(app)
    assert (entry["who"], entry["action"], entry["job_ids"]) == ("admin", "dlq.redrive", [job_id])


async def test_edit_and_retry_replaces_the_data(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    [job_id] = await dead_jobs(app, 1, note="key sk-live-abcdefghijklmnop1234")
    await login(client)
    token = csrf_of((await client.get(f"/dlq/{job_id}")).text)
    # The redacted value must be replaced: nothing changes until it is.
    kept = await client.post(
        f"/dlq/{job_id}/edit", data={"csrf": token, "data": '{"note": "key [REDACTED]"}'}
    )
    assert kept.status_code == 400
    bad = await client.post(f"/dlq/{job_id}/edit", data={"csrf": token, "data": "{nope"})
    assert bad.status_code == 400
    assert "valid JSON" in bad.text
    assert (await app.queue.get(job_id)).state is JobState.DEAD
    done = await client.post(f"/dlq/{job_id}/edit", data={"csrf": token, "data": '{"x": 1}'})
    assert done.status_code == 303
    await run_until_idle(app)
    job = await app.queue.get(job_id)
    assert (job.state, job.data) == (JobState.COMPLETED, {"x": 1})
    [entry] = await audit.entries(app)
    assert entry["action"] == "dlq.edit_redrive"


async def test_delete_removes_the_entry(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    [job_id, other] = await dead_jobs(app, 2)
    await login(client)
    token = csrf_of((await client.get(f"/dlq/{job_id}")).text)
    response = await client.post(f"/dlq/{job_id}/delete", data={"csrf": token})
    assert response.status_code == 303
    assert [e.job_id for e in (await app.dlq.list()).items] == [other]
    assert (await client.get(f"/dlq/{job_id}")).status_code == 404


async def test_bulk_redrive_by_filter_shows_the_count_first(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app, provider = setup
    ids = await dead_jobs(app, 4)
    await login(client)
    token = csrf_of((await client.get("/dlq?user=u0")).text)
    form = {"csrf": token, "action": "redrive", "scope": "filter", "user": "u0"}
    confirm = await client.post("/dlq/bulk", data=form)
    assert confirm.status_code == 200
    assert re.search(r'id="confirm-count">2<', confirm.text)
    assert await app.dlq.count() == 4  # nothing changed yet
    done = await client.post("/dlq/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    provider.down = False
    await run_until_idle(app)
    states = {i: (await app.queue.get(i)).state for i in ids}
    assert sorted(states.values()) == [JobState.COMPLETED] * 2 + [JobState.DEAD] * 2
    assert {(await app.queue.get(i)).user_id for i in ids[::2]} == {"u0"}
    [entry] = await audit.entries(app)
    assert (entry["action"], entry["count"]) == ("dlq.bulk_redrive", 2)
    assert entry["details"]["filter"] == {"user": "u0"}


async def test_bulk_delete_of_a_selection(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    ids = await dead_jobs(app, 3)
    await login(client)
    token = csrf_of((await client.get("/dlq")).text)
    form = {"csrf": token, "action": "delete", "scope": "selected", "ids": ids[:2]}
    confirm = await client.post("/dlq/bulk", data=form)
    assert re.search(r'id="confirm-count">2<', confirm.text)
    await client.post("/dlq/bulk", data={**form, "confirm": "yes"})
    assert [e.job_id for e in (await app.dlq.list()).items] == [ids[2]]
    empty = await client.post("/dlq/bulk", data={"csrf": token, "action": "delete"})
    assert empty.status_code == 400


async def test_audit_page_lists_actions(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    [job_id] = await dead_jobs(app, 1)
    await login(client)
    token = csrf_of((await client.get(f"/dlq/{job_id}")).text)
    await client.post(f"/dlq/{job_id}/delete", data={"csrf": token})
    html = (await client.get("/audit")).text
    assert html.count('class="audit"') == 1
    assert "dlq.delete" in html


async def test_audit_log_is_bounded(setup: tuple[App, Provider]) -> None:
    app = setup[0]
    for i in range(audit.KEEP + 5):
        await audit.record(app, who="t", action=f"a{i}")
    kept = await audit.entries(app)
    assert len(kept) == audit.KEEP
    assert kept[0]["action"] == f"a{audit.KEEP + 4}"


async def test_oversized_form_is_refused(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    await login(client)
    response = await client.post("/dlq/bulk", content=b"a=" + b"x" * 300_000)
    assert response.status_code == 413


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    await login(client)
    token = csrf_of((await client.get("/")).text)
    assert (await client.post("/logout", data={"csrf": token})).status_code == 303
    assert (await client.get("/")).status_code == 303


async def test_loopback_without_admin_token_still_needs_a_session(
    setup: tuple[App, Provider],
) -> None:
    from genqueue.service.settings import ServiceSettings

    web = web_app(setup[0], ServiceSettings(admin_token=None))
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/dlq")).status_code == 303
        assert "No admin token is configured" in (await c.get("/login")).text
        assert (await c.post("/login", data={"token": ""})).status_code == 303
        assert (await c.get("/dlq")).status_code == 200
        assert (await c.post("/dlq/bulk", data={"action": "delete"})).status_code == 403


async def test_overview_shows_firing_alerts(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    await login(client)
    html = (await client.get("/")).text
    assert 'id="no-alerts">No alert firing.<' in html and "No alert evaluation yet" in html
    await dead_jobs(app, 2)
    ev, _ = evaluator(app, only(DlqSize(threshold=1)))
    await ev.step()
    html = (await client.get("/")).text
    assert "No alert firing." not in html
    row = re.search(
        r'<tr class="alert severity-warning" id="alert-dlq_size">(.*?)</tr>', html, re.S
    )
    assert row, html
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1])]
    assert cells == [
        "warning",
        "DLQ size above 1",
        "2026-01-01 00:00:00.000 (0s)",
        "2",
        "1",
        "2 entries in the dead letter queue (threshold 1).",
    ]
    assert "Evaluated 2026-01-01 00:00:00.000 by w1." in html
    ev.settings = only(DlqSize(threshold=5))  # resolves: gone from the overview
    await ev.step()
    html = (await client.get("/")).text
    assert 'id="alert-dlq_size"' not in html and "No alert firing." in html


def chart_of(html: str, name: str) -> str:
    found = re.search(
        rf'<figure class="card chart chart-{name}" id="chart-{name}">.*?</figure>', html, re.S
    )
    assert found, name
    return found[0]


async def test_overview_charts_count_each_minute_of_the_last_hour(
    client: httpx.AsyncClient, setup: tuple[App, Provider]
) -> None:
    app = setup[0]
    clock = app.clock
    assert isinstance(clock, FakeClock)
    for i in range(5):  # minute 0: 3 complete, 2 fail once and are dead-lettered
        await app.queue.enqueue("images.generate", {"fail": i < 2})
    await run_until_idle(app)
    clock.advance(120)
    for i in range(2):  # minute 2: 1 completes, 1 is dead-lettered
        await app.queue.enqueue("images.generate", {"fail": i < 1})
    await run_until_idle(app)
    await login(client)
    html = (await client.get("/")).text
    expected = {"throughput": (3, 1, 4), "failures": (2, 1, 3), "dlq-inflow": (2, 1, 3)}
    for name, (first, third, total) in expected.items():
        chart = chart_of(html, name)
        assert chart.count('<rect class="bar"') == 2, name
        minutes = re.findall(r"<title>(\d\d:\d\d) UTC, [a-z -]+: (\d+)</title>", chart)
        assert minutes == [("00:00", str(first)), ("00:02", str(third))], name
        assert f'id="total-{name}">{total}<' in chart, name
    assert "style=" not in html  # colours come from classes (the CSP allows no inline style)
    clock.advance(3600)  # an hour later both minutes have left the charts
    html = (await client.get("/")).text
    for name in expected:
        chart = chart_of(html, name)
        assert '<rect class="bar"' not in chart and f'id="total-{name}">0<' in chart
