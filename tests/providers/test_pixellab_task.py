"""``pixellab.generate`` end to end: a real worker, a real backend, the fake PixelLab.

Covers the error mapping as the queue sees it, resume instead of resubmit, rate limits (no
retry budget spent, cooldown shared), the circuit breaker on a revoked key, and cost.
Uncertain submits, the ledger and poll errors are in ``test_never_pay_twice``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.providers.conftest import KEY, SHARED_BACKENDS
from tests.providers.pixellab_helpers import (
    PIXFLUX,
    PRO,
    enqueue,
    pixellab_app,
    run_until,
    terminal,
)

from genqueue import App, ErrorKind, JobState, Worker, WorkerSettings
from genqueue.providers.fake_pixellab import FakeOptions, FakePixelLab, fail_job, status_fault
from genqueue.providers.pixellab import PixelLab
from genqueue.providers.png import png_size


async def test_sync_generation_writes_pngs_and_records_cost(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX, user_id="u1")
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.COMPLETED
    [image] = job.result["images"]
    assert png_size(Path(image["path"]).read_bytes()) == (64, 64)
    assert job.cost["usd"] > 0 and job.history[-1].details["cost"]["usd"] == job.cost["usd"]
    assert fake.stats()["charges_by_client_job"] == {job_id: 1}


async def test_async_generation_stores_the_remote_id_and_polls(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    [job_id] = await enqueue(app, "generate-image-v2", PRO)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and len(job.result["images"]) == 4
    assert job.remote_job_id and job.result["remote_job_id"] == job.remote_job_id
    stats = fake.stats()
    assert (
        stats["submits_by_client_job"] == {job_id: 1}
        and stats["polls_by_job"][job.remote_job_id] >= 2
    )


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (
            status_fault(401, body={"detail": "Invalid API token"}),
            None,
        ),  # breaker: waits, then completes
        (
            status_fault(400, body={"detail": "Source character is not completed"}),
            ErrorKind.VALIDATION,
        ),
        (status_fault(404, body={"detail": "Character not found"}), ErrorKind.VALIDATION),
        (status_fault(409, body={"detail": "Direction exists"}), ErrorKind.VALIDATION),
        (
            status_fault(422, body={"detail": [{"loc": ["body", "x"], "msg": "bad"}]}),
            ErrorKind.VALIDATION,
        ),
    ],
)
async def test_submit_errors_that_are_not_retried(
    setup: tuple[App, PixelLab], fake: FakePixelLab, fault: Any, kind: ErrorKind | None
) -> None:
    app, _ = setup
    fake.add_fault("POST /v2/create-image-*", fault, times=1)
    [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    if kind is None:
        assert job.state is JobState.COMPLETED and job.retry_count == 0
        return
    entry = await app.dlq.get(job_id)
    assert entry.error_kind is kind and job.retry_count == 0
    assert fake.stats()["charges"] == 0
    assert entry.job.last_error is not None and entry.job.last_error.status == fault.status


async def test_remote_failure_is_dead_lettered_with_its_cost(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    fake.add_fault("POST /v2/generate-image-v2", fail_job("content policy"), times=1)
    [job_id] = await enqueue(app, "generate-image-v2", PRO, user_id="u7")
    await run_until(app, terminal(app, [job_id]))
    entry = await app.dlq.get(job_id)
    assert entry.error_kind is ErrorKind.REMOTE_FAILED and entry.remote_job_id
    assert "content policy" in entry.job.last_error.message  # type: ignore[union-attr]
    assert entry.job.cost["usd"] > 0  # billed, and lost
    assert (await app.dlq.stats()).cost_lost["usd"] == entry.job.cost["usd"]


async def test_lost_remote_job_is_dead_lettered_not_resubmitted(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    fake.add_fault(
        "GET /v2/background-jobs/*", status_fault(404, body={"detail": "Job not found"}), times=None
    )
    [job_id] = await enqueue(app, "generate-image-v2", PRO)
    await run_until(app, terminal(app, [job_id]))
    entry = await app.dlq.get(job_id)
    assert entry.error_kind is ErrorKind.REMOTE_LOST and entry.remote_job_id
    assert fake.stats()["submits_by_client_job"] == {job_id: 1}


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
@pytest.mark.parametrize("retry_after", [1, None])
async def test_rate_limits_spend_no_retry_budget_and_are_shared(
    fake: FakePixelLab, tmp_path: Path, retry_after: int | None, backend: str
) -> None:
    options = FakeOptions(
        tokens={KEY: "main"},
        max_concurrent_jobs=2,
        retry_after_seconds=retry_after,
        # Each remote job runs 0.3 s, so ten jobs surely meet the limit of two.
        complete_after_polls=10**6,
        complete_after_seconds=0.3,
    )
    with FakePixelLab(options) as limited:
        async with pixellab_app(
            limited, tmp_path, max_retries=1, max_in_flight=6, backend=backend
        ) as (app, _):
            ids = await enqueue(app, "generate-image-v2", PRO, n=10)
            await run_until(app, terminal(app, ids), concurrency=10, timeout=60)
            jobs = [await app.get(i) for i in ids]
        stats = limited.stats()
    assert all(j.state is JobState.COMPLETED and j.retry_count == 0 for j in jobs)
    assert stats["rejected_429"]["main"] >= 1
    assert any(j.meta.get("rate_limit_waits") for j in jobs)
    assert stats["peak_in_flight"]["main"] <= 2
    assert stats["peak_in_flight_after_first_429"]["main"] <= 2
    wait = retry_after if retry_after is not None else 2.0  # our backoff starts at 2 s
    for rejected in stats["rejected_429_times"]:
        # requests already on the wire when the 429 came back may land a moment later
        early = [t for t in stats["submit_times"] if rejected + 0.25 < t < rejected + wait - 0.05]
        assert early == [], f"submits during the cooldown after the 429 at {rejected:.2f}"


async def test_revoked_key_opens_the_breaker_and_the_rest_wait(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=20)
    done_before = 3

    async def some_done() -> bool:
        states = [(await app.get(i)).state for i in ids]
        return states.count(JobState.COMPLETED) >= done_before

    opened: list[str] = []
    app.events.subscribe(
        lambda e: opened.append(e.name.value), names=["circuit_opened", "circuit_closed"]
    )
    worker = Worker(
        app, queues=["pixellab"], settings=WorkerSettings(concurrency=2, poll_interval=0.02)
    )
    runner = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while not await some_done():
                await asyncio.sleep(0.01)
            fake.revoke_token(KEY)
            charged = fake.stats()["charges"]
            while "circuit_opened" not in opened:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # probes keep failing while the key is revoked
            assert fake.stats()["charges"] == charged  # nothing more is charged
            errors_401 = fake.stats()["errors"]["401"]
            assert errors_401 <= 2 + 5  # the jobs in flight, then about one probe per cooldown
            states = [(await app.get(i)).state for i in ids]
            assert JobState.DEAD not in states and states.count(JobState.SCHEDULED) >= 1
            fake.restore_token(KEY)
            while not await terminal(app, ids)():
                await asyncio.sleep(0.05)
    finally:
        worker.request_stop()
        await runner
    jobs = [await app.get(i) for i in ids]
    assert all(j.state is JobState.COMPLETED for j in jobs)
    assert fake.stats()["charges"] == 20 and "circuit_closed" in opened


async def test_stats_show_spend_and_the_breaker(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    from genqueue.providers.guard import all_guard_states
    from genqueue.stats import spend_report

    app, _ = setup
    fake.add_fault("POST /v2/generate-image-v2", fail_job("nope"), times=1)
    ids = await enqueue(app, "generate-image-v2", PRO, n=2, user_id="u1")
    await run_until(app, terminal(app, ids))
    report = await spend_report(app)
    assert report["spent"]["usd"] == pytest.approx(2 * report["wasted"]["usd"])
    assert report["by_user"]["u1"]["wasted"]["usd"] > 0
    [guard] = await all_guard_states(app)
    assert guard["breaker"]["state"] == "closed" and guard["account"].startswith("pixellab:")
    assert KEY not in str(guard)
