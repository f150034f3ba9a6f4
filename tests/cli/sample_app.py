"""An app whose jobs end in every shape the CLI must render (``--app tests.cli.sample_app:app``).

``populate(url)`` fills a SQLite file with: completed, dead (several kinds, long
messages), retrying and scheduled jobs, a job whose snoozes were merged in its history
(attempt numbers jump), spend with fractions, and an open provider breaker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from genqueue import App, RetryPolicy, Snooze, TaskError, Worker, WorkerSettings
from genqueue.classify import ErrorKind
from genqueue.context import JobContext
from genqueue.providers.breaker import ACCOUNTS_KEY, breaker_key

app = App(retry=RetryPolicy(base_delay=600, jitter=0))

#: Attempts ``snoozy`` waits (same reason each time) before it fails for good.
SNOOZES = 4
LONG_MESSAGE = (
    "the provider answered 422 Unprocessable Entity: the description is too long for "
    "this model (at most 2000 characters, got 2417); shorten it or pick another model"
)
ACCOUNT = "pixellab:0123456789abcdef"


@app.task("images.generate-a-very-long-task-name", queue="images", max_retries=2)
async def generate(ctx: JobContext) -> dict[str, Any]:
    data = ctx.data or {}
    ctx.add_cost(usd=0.0123, generations=1.0 / 3)
    outcome = data.get("outcome")
    if outcome == "invalid":
        raise TaskError(LONG_MESSAGE, kind=ErrorKind.VALIDATION, status=422)
    if outcome == "flaky":
        raise TaskError("503 Service Unavailable", kind=ErrorKind.SERVER, status=503)
    return {"ok": True}


@app.task("snoozy", queue="images", max_retries=0)
async def snoozy(ctx: JobContext) -> None:
    if ctx.attempt <= SNOOZES:
        raise Snooze(0.01, "rate limit cooldown")
    raise TaskError("insufficient credits", kind=ErrorKind.PAYMENT, status=402)


async def _populate(url: str) -> dict[str, str]:
    app.use_backend(url)
    ids: dict[str, str] = {}
    async with app:
        for name, data, user in (
            ("ok", {"outcome": "ok"}, "alice"),
            ("invalid", {"outcome": "invalid"}, "a-user-with-a-rather-long-identifier"),
            ("flaky", {"outcome": "flaky"}, "bob"),
        ):
            job = await app.enqueue("images.generate-a-very-long-task-name", data, user_id=user)
            ids[name] = job.id
        ids["snoozy"] = (await app.enqueue("snoozy", None, user_id="carol")).id
        later = await app.enqueue("images.generate-a-very-long-task-name", {}, delay=3600)
        ids["scheduled"] = later.id
        settings = WorkerSettings(poll_interval=0.01, sweep_interval=3600)
        await Worker(app, burst=True, burst_horizon=2.0, settings=settings).run()
        now = await app.backend.time()
        await app.backend.state_put(ACCOUNTS_KEY, [ACCOUNT], expect_version=0)
        breaker = {"state": "open", "until": now + 600, "cooldown": 600, "reason": "auth",
                   "kind": "auth", "opened_at": now}  # fmt: skip
        await app.backend.state_put(breaker_key(ACCOUNT), breaker, expect_version=0)
    return ids


def populate(url: str) -> dict[str, str]:
    """Fill the database at ``url``; return job ids by name."""
    logging.getLogger("genqueue").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_populate(url))
    finally:
        logging.getLogger("genqueue").setLevel(logging.NOTSET)
