"""The dashboard in real headless Chromium (Debian's package, driven by Playwright) against
a real uvicorn server with a worker in the server process.

Skipped only when Chromium or Playwright is missing and CI is not set: under CI they run.
Screenshots of each main page go to $GENQUEUE_ARTIFACTS (or the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genqueue.testing import run_until_idle
from tests.service.dashboard_app import ADMIN, Provider, make_app, web_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = "<script>alert(1)</script>"

try:
    from playwright.sync_api import Page, expect, sync_playwright

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the dev extras install it
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (HAVE_PLAYWRIGHT and os.path.exists(CHROMIUM)) and not os.environ.get("CI"),
        reason="needs the playwright package and Debian's chromium (apt-get install chromium)",
    ),
]


class Server:
    def __init__(self, url: str) -> None:
        import uvicorn

        self.app, self.provider = make_app(url)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(web_app(self.app, worker=True), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def start(self) -> None:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return
            self.thread.join(0.05)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


async def _seed(url: str) -> dict[str, Any]:
    """Dead jobs to find: one for alice, three for bob, one carrying a <script>."""
    app, _ = make_app(url)
    async with app:
        alice = await app.queue.enqueue(
            "images.generate", {"fail": True, "msg": "quota exceeded"}, user_id="alice"
        )
        bob = [
            await app.queue.enqueue(
                "images.generate", {"fail": True, "msg": "gpu timeout"}, user_id="bob"
            )
            for _ in range(3)
        ]
        evil = await app.queue.enqueue(
            "images.generate", {"fail": True, "msg": XSS, "prompt": XSS}, user_id="mallory"
        )
        await run_until_idle(app)
    return {"alice": alice.id, "bob": [j.id for j in bob], "evil": evil.id}


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("GENQUEUE_ARTIFACTS")
    path = Path(root) / "dashboard" if root else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, Any]]]:
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    seeded = asyncio.run(_seed(url))
    server = Server(url)
    server.start()
    try:
        yield server, seeded
    finally:
        server.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _log_in(page: Page, base: str, shots: Path) -> None:
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.screenshot(path=shots / "login.png", full_page=True)
    page.fill("input[name=token]", "definitely-not-the-admin-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not the admin token")
    page.fill("input[name=token]", ADMIN)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#dlq-size")).to_have_text("5")
    page.screenshot(path=shots / "overview.png", full_page=True)


def _find_redrive_and_complete(page: Page, base: str, provider: Provider, shots: Path) -> None:
    page.click("nav >> text=Dead letters")
    page.fill("form.filters input[name=user]", "alice")
    page.click("form.filters button[type=submit]")
    rows = page.locator("tr.entry")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("quota exceeded")
    page.screenshot(path=shots / "dlq.png", full_page=True)
    rows.first.locator("a").click()
    expect(page.locator("tr.attempt")).to_have_count(1)
    expect(page.locator("tr.attempt")).to_contain_text("upstream exploded: quota exceeded")
    page.screenshot(path=shots / "dlq_entry.png", full_page=True)
    provider.down = False  # the provider recovers; the redriven job can succeed
    page.click("#retry")
    # The job page refreshes itself (meta refresh, no script) until the job ends.
    expect(page.locator("#job-state")).to_have_text("completed", timeout=30_000)
    expect(page.locator("tr.attempt")).to_have_count(2)
    page.screenshot(path=shots / "job.png", full_page=True)


def _bulk_redrive(page: Page, base: str, shots: Path) -> None:
    page.goto(base + "/dlq")
    page.fill("form.filters input[name=user]", "bob")
    page.click("form.filters button[type=submit]")
    expect(page.locator("tr.entry")).to_have_count(3)
    page.click("#redrive-all")
    expect(page.locator("#confirm-count")).to_have_text("3")
    page.screenshot(path=shots / "bulk_confirm.png", full_page=True)
    page.click("#confirm")
    expect(page.locator("#done")).to_have_text("redrove 3 entries")
    for _ in range(200):  # the worker in the server finishes them
        page.goto(base + "/jobs?user=bob&state=completed")
        if page.locator("tr.job").count() == 3:
            break
        page.wait_for_timeout(100)
    expect(page.locator("tr.job")).to_have_count(3)
    page.screenshot(path=shots / "jobs.png", full_page=True)


def _csrf_less_post_refused(page: Page, base: str, evil: str) -> None:
    response = page.request.post(f"{base}/dlq/{evil}/delete", form={"nothing": "here"})
    assert response.status == 403
    page.goto(f"{base}/dlq/{evil}")
    expect(page.locator("h1")).to_contain_text(evil)  # still there


def _script_is_inert(page: Page, base: str, evil: str, shots: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base}/dlq/{evil}")
    expect(page.locator("#payload")).to_contain_text(XSS)  # shown as text
    expect(page.locator("tr.attempt")).to_contain_text(XSS)
    page.goto(f"{base}/dlq?user=mallory")
    expect(page.locator("tr.entry")).to_contain_text(XSS)
    assert page.locator("script:not([src])").count() == 0
    assert dialogs == []


def test_dashboard_in_a_browser(
    served: tuple[Server, dict[str, Any]], page: Page, artifacts: Path
) -> None:
    server, seeded = served
    _log_in(page, server.base, artifacts)
    _find_redrive_and_complete(page, server.base, server.provider, artifacts)
    _bulk_redrive(page, server.base, artifacts)
    _csrf_less_post_refused(page, server.base, seeded["evil"])
    _script_is_inert(page, server.base, seeded["evil"], artifacts)
    page.goto(server.base + "/audit")
    expect(page.locator("tr.audit")).to_have_count(2)  # the redrive and the bulk redrive
    page.screenshot(path=artifacts / "audit.png", full_page=True)
    for name in ("login", "overview", "dlq", "dlq_entry", "job", "bulk_confirm", "jobs", "audit"):
        assert (artifacts / f"{name}.png").stat().st_size > 1000
