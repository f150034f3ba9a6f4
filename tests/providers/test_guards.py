"""The account guards under stress: the breaker, cooldowns, overload, and paid remote jobs.

Each test reproduces a way a provider outage used to waste time or money: in-flight
failures escalating the breaker, timeouts that never opened it, polls ignoring a
cooldown, sync routes collapsing under 529s, and paid async jobs dead-lettered after a
few poll errors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import drain
from tests.providers.conftest import KEY
from tests.providers.pixellab_helpers import (
    PIXFLUX,
    PRO,
    enqueue,
    pixellab_app,
    run_until,
    terminal,
)

from genqueue import App, ErrorKind, JobState, Worker, WorkerSettings
from genqueue.cli.main import run as cli
from genqueue.job import AttemptOutcome
from genqueue.providers.breaker import list_breakers, reset_breaker
from genqueue.providers.fake_pixellab import FakePixelLab, gateway_fault, hang_fault
from genqueue.providers.guard import BreakerSettings, ProviderGuard, account_id
from genqueue.providers.pixellab import PixelLab

SYNC_ROUTE = "POST /v2/create-image-*"


async def breaker_of(app: App) -> dict[str, Any]:
    [breaker] = await list_breakers(app)
    return breaker


async def test_in_flight_failures_do_not_escalate_the_breaker(
    make_fake: Any, tmp_path: Path
) -> None:
    fake = make_fake(sync_latency=(0.2, 0.3), max_concurrent_sync=16)
    breaker = BreakerSettings(auth_cooldown=1.0, cooldown=1.0, max_cooldown=60.0)
    async with pixellab_app(fake, tmp_path, breaker=breaker) as (app, _):
        events: list[str] = []
        app.events.subscribe(
            lambda e: events.append(e.name.value),
            names=["circuit_opened", "circuit_probe_failed", "circuit_closed"],
        )
        ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=24)
        worker = Worker(app, queues=["pixellab"], settings=WorkerSettings(concurrency=8))
        runner = asyncio.create_task(worker.run())
        try:
            while fake.stats()["charges"] < 4:
                await asyncio.sleep(0.01)
            fake.revoke_token(KEY)  # every request in flight now comes back 401
            while "circuit_opened" not in events:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)  # the in-flight requests have all come back
            state = await breaker_of(app)
            # Absorbed: the cooldown is still the first one, not doubled per 401.
            assert state["state"] == "open" and state["cooldown"] == 1.0
            assert events == ["circuit_opened"]
            fake.restore_token(KEY)
            await run_until_done(app, ids, runner)
        finally:
            worker.request_stop()
            await runner
        jobs = [await app.get(i) for i in ids]
    assert all(j.state is JobState.COMPLETED for j in jobs)
    assert events.count("circuit_opened") == 1 and events[-1] == "circuit_closed"


async def run_until_done(app: App, ids: list[str], runner: asyncio.Task[Any]) -> None:
    check = terminal(app, ids)
    async with asyncio.timeout(30):
        while not await check():
            if runner.done():
                runner.result()
            await asyncio.sleep(0.05)


async def test_breakers_are_listed_and_reset_from_python_and_the_cli(
    setup: tuple[App, PixelLab], fake: FakePixelLab, tmp_path: Path
) -> None:
    app, integration = setup
    fake.revoke_token(KEY)
    [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX)

    async def opened() -> bool:
        breakers = await list_breakers(app)
        return bool(breakers) and breakers[0]["state"] == "open"

    await run_until(app, opened)
    state = await breaker_of(app)
    assert state["account"] == integration.account and KEY not in str(state)
    assert state["reason"] == "auth" and state["open_for"] > 0
    url = app.backend.url
    # The CLI opens its own event loop: run it in a thread, as a separate command would.
    assert await asyncio.to_thread(cli, ["breaker", "list", "--backend", url]) == 0
    assert await asyncio.to_thread(cli, ["breaker", "reset", "nope:", "--backend", url]) == 3
    closed: list[str] = []
    app.events.subscribe(lambda e: closed.append(e.fields["reason"]), names=["circuit_closed"])
    assert await reset_breaker(app, integration.account[:12]) == [integration.account]
    assert (await breaker_of(app))["state"] == "closed" and closed == ["reset"]
    assert await reset_breaker(app) == []  # nothing open any more
    fake.restore_token(KEY)
    await run_until(app, terminal(app, [job_id]))
    assert (await app.get(job_id)).state is JobState.COMPLETED


async def test_a_new_key_is_a_new_account_whose_breaker_starts_closed(app: App) -> None:
    old = ProviderGuard(app, account_id("pixellab", "sk-revoked"))
    await old.admit("j1")
    assert await old.record_failure("j1", "auth", immediate=True) > 0
    assert not (await old.admit("j2")).go
    new = ProviderGuard(app, account_id("pixellab", "sk-new"))
    assert new.account != old.account and (await new.admit("j3")).go


async def test_async_submit_timeouts_open_the_breaker(make_fake: Any, tmp_path: Path) -> None:
    fake = make_fake()
    fake.add_fault("POST /v2/generate-image-v2", hang_fault(), times=None)
    breaker = BreakerSettings(failure_threshold=3, cooldown=5.0, max_cooldown=5.0)
    async with pixellab_app(fake, tmp_path, breaker=breaker, read_timeout=0.2) as (app, _):
        events: list[dict[str, Any]] = []
        sent_when_opened: list[int] = []

        def on_open(event: Any) -> None:
            events.append(dict(event.fields))
            sent_when_opened.append(sum(fake.stats()["submits_by_operation"].values()))

        app.events.subscribe(on_open, names=["circuit_opened"])
        await enqueue(app, "generate-image-v2", PRO, n=6)

        async def opened() -> bool:
            return bool(events)

        await run_until(app, opened, concurrency=6)
        settled: list[int] = []

        async def quiet_for_a_while() -> bool:
            # A request admitted just before the breaker opened may still go out: count
            # from a moment later, when those are sent.
            await asyncio.sleep(0.5)
            settled.append(sum(fake.stats()["submits_by_operation"].values()))
            await asyncio.sleep(1.0)
            return True

        await run_until(app, quiet_for_a_while, concurrency=6)
        assert await app.dlq.count() == 0  # waiting, not dead-lettered
    assert events[0]["reason"] == "3 timeout errors in a row" and len(events) == 1
    # Nothing new was sent during its cooldown: at most the six admitted before it opened.
    assert settled[0] <= sent_when_opened[0] + 6
    assert sum(fake.stats()["submits_by_operation"].values()) == settled[0]


async def test_polls_wait_out_the_shared_rate_limit_cooldown(
    make_fake: Any, tmp_path: Path
) -> None:
    fake = make_fake(complete_after_polls=10**6, complete_after_seconds=1.5)
    async with pixellab_app(fake, tmp_path) as (app, integration):
        [job_id] = await enqueue(app, "generate-image-v2", PRO)

        async def polling() -> bool:
            return sum(fake.stats()["polls_by_job"].values()) >= 2

        worker = Worker(app, queues=["pixellab"], settings=WorkerSettings(poll_interval=0.02))
        runner = asyncio.create_task(worker.run())
        try:
            while not await polling():
                await asyncio.sleep(0.01)
            await integration.guard.rate_limited(0.8, "HTTP 429 (test)")
            await asyncio.sleep(0.05)  # a poll already on the wire may land
            before = sum(fake.stats()["polls_by_job"].values())
            await asyncio.sleep(0.6)
            assert sum(fake.stats()["polls_by_job"].values()) == before
            await run_until_done(app, [job_id], runner)
        finally:
            worker.request_stop()
            await runner
        job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and fake.stats()["submits_by_client_job"] == {job_id: 1}


async def test_sync_routes_adapt_to_overload_instead_of_collapsing(
    make_fake: Any, tmp_path: Path
) -> None:
    fake = make_fake(max_concurrent_sync=2, sync_latency=(0.1, 0.15))
    async with pixellab_app(fake, tmp_path, max_in_flight=8) as (app, integration):
        ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=24)
        await run_until(app, terminal(app, ids), concurrency=8, timeout=60)
        jobs = [await app.get(i) for i in ids]
        state = await integration.guard.state()
    assert all(j.state is JobState.COMPLETED and j.retry_count == 0 for j in jobs)
    assert state["lanes"]["sync"]["limit"] < 8  # learned from the 529s
    overloaded = fake.stats()["errors"]["529"]
    assert 1 <= overloaded <= 12, overloaded
    assert max(j.meta.get("rate_limit_waits", 0) for j in jobs) <= 3
    waits = [
        a.delay
        for j in jobs
        for a in j.history
        if a.outcome is AttemptOutcome.SNOOZED and str(a.details.get("reason")).startswith("rate")
    ]
    # Released with jitter: the waiting jobs do not all come back at the same instant.
    assert len(waits) >= 2 and max(waits) - min(waits) >= 0.05  # type: ignore[operator]


async def test_poll_errors_are_not_attempts(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    fake.add_fault("GET /v2/background-jobs/*", gateway_fault(503), times=8)
    [job_id] = await enqueue(app, "generate-image-v2", PRO)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and job.retry_count == 0
    runs = [a for a in job.history if a.outcome is not AttemptOutcome.SNOOZED]
    assert len(runs) == 1
    assert fake.stats()["submits_by_client_job"] == {job_id: 1}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_remote_job_past_its_deadline_is_dead_lettered_and_a_redrive_polls_it(
    fake: FakePixelLab, tmp_path: Path, backend: str
) -> None:
    rule = fake.add_fault("GET /v2/background-jobs/*", gateway_fault(503), times=None)
    async with pixellab_app(fake, tmp_path, backend=backend, poll_deadline=1.0) as (app, _):
        [job_id] = await enqueue(app, "generate-image-v2", PRO)
        await run_until(app, terminal(app, [job_id]))
        dead = await app.dlq.get(job_id)
        assert dead.error_kind is ErrorKind.TIMEOUT and dead.remote_job_id
        assert "a redrive polls it again" in dead.job.last_error.message  # type: ignore[union-attr]
        assert dead.job.retry_count == 0  # a late remote job is not retried blindly
        fake.remove_fault(rule)
        await app.dlq.redrive(job_id)
        await run_until(app, terminal(app, [job_id]))
        job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and job.remote_job_id == dead.remote_job_id
    assert fake.stats()["submits_by_client_job"] == {job_id: 1}
    assert fake.stats()["charges_by_client_job"] == {job_id: 1}


async def test_slots_of_jobs_that_cannot_use_them_are_freed_when_a_lane_is_full(
    app: App,
) -> None:
    # Seen in the chaos test: jobs killed while polling until they were dead-lettered
    # (worker_lost) kept their async slots until the TTL (the remote job's deadline plus a
    # minute); with the lane's limit lowered by 429s, every other async job waited for a
    # slot for minutes.
    @app.task("remote", max_retries=3)
    async def remote(ctx):  # type: ignore[no-untyped-def]
        await ctx.set_remote_job_id("r-1")
        raise ConnectionError("poll failed")  # retried later; the remote job runs on

    @app.task("idle")
    async def idle(ctx):  # type: ignore[no-untyped-def]
        return None

    resuming = await app.enqueue("remote", {})
    await drain(app)
    assert (await app.get(resuming.id)).state is JobState.RETRYING
    cancelled = await app.enqueue("idle", {})
    await app.cancel(cancelled.id)
    running = await app.enqueue("idle", {})
    [fetched] = await app.backend.fetch(["default"], "w1", 1, 30)
    assert fetched.id == running.id  # ACTIVE: its attempt is under way
    guard = ProviderGuard(app, "acct", max_in_flight=3)
    for job in (resuming, cancelled, running):
        assert await guard.acquire_slot(job.id, 600, "async")
    newcomer = await app.enqueue("idle", {})
    assert await guard.acquire_slot(newcomer.id, 600, "async")  # the cancelled job's slot
    held = set(await app.backend.slot_holders("inflight:acct"))
    assert held == {resuming.id, running.id, newcomer.id}
    # On the sync lane a request lives only during its attempt: a job waiting to retry
    # holds nothing there, remote job or not.
    for job in (resuming, running):
        assert await guard.acquire_slot(job.id, 600, "sync")
    assert await guard.reap_slots("sync") == 1
    assert await app.backend.slot_holders("inflight:acct:sync") == [running.id]
