"""``pixellab.generate`` end to end: a real worker, a real backend, the fake PixelLab.

Covers the error mapping as the queue sees it, resume instead of resubmit, uncertain
submissions, rate limits (no retry budget spent, cooldown shared), the circuit breaker on
a revoked key, and cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import BACKENDS, backend_url
from tests.providers.conftest import KEY

from genqueue import App, ErrorKind, JobRequest, JobState, RetryPolicy, Worker, WorkerSettings
from genqueue.providers.fake_pixellab import (
    FakeOptions,
    FakePixelLab,
    accept_then_fail,
    drop_fault,
    fail_job,
    gateway_fault,
    hang_fault,
    status_fault,
)
from genqueue.providers.guard import BreakerSettings
from genqueue.providers.pixellab import PixelLab, PixelLabSettings, register
from genqueue.providers.png import png_size

PIXFLUX = {"description": "a knight", "image_size": {"width": 64, "height": 64}}
PRO = {"description": "a knight", "image_size": {"width": 128, "height": 128}}


def settings(fake: FakePixelLab, out: Path, **changes: Any) -> PixelLabSettings:
    base: dict[str, Any] = {
        "api_key": KEY,
        "base_url": fake.base_url,
        "output_dir": out,
        "poll_interval": 0.02,
        "lost_grace": 0.3,
        "read_timeout": 5.0,
        "breaker": BreakerSettings(
            cooldown=0.2, auth_cooldown=0.2, max_cooldown=0.5, failure_threshold=50
        ),
    }
    return PixelLabSettings(**{**base, **changes})


@asynccontextmanager
async def pixellab_app(
    fake: FakePixelLab,
    tmp_path: Path,
    max_retries: int = 2,
    backend: str = "sqlite",
    **changes: Any,
) -> AsyncIterator[tuple[App, PixelLab]]:
    app = App(
        backend_url(backend, tmp_path),
        retry=RetryPolicy(base_delay=0.05, jitter=0, max_retries=max_retries),
    )
    integration = register(app, settings(fake, tmp_path / "out", **changes))
    try:
        async with app:
            yield app, integration
    finally:
        await integration.aclose()


SHARED_BACKENDS = [b for b in BACKENDS if b in ("sqlite", "redis")]


@pytest.fixture(params=SHARED_BACKENDS)
async def setup(
    request: pytest.FixtureRequest, fake: FakePixelLab, tmp_path: Path
) -> AsyncIterator[tuple[App, PixelLab]]:
    """The task on every shared backend: the guards live in the backend's shared state."""
    async with pixellab_app(fake, tmp_path, backend=request.param) as pair:
        yield pair


async def run_until(
    app: App, done: Callable[[], Awaitable[bool]], *, concurrency: int = 4, timeout: float = 30
) -> None:
    worker = Worker(
        app,
        queues=["pixellab"],
        settings=WorkerSettings(concurrency=concurrency, poll_interval=0.02, lease_seconds=10),
    )
    runner = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                if runner.done():
                    runner.result()
                await asyncio.sleep(0.03)
    finally:
        worker.request_stop()
        await runner


async def enqueue(
    app: App, operation: str, params: dict[str, Any], n: int = 1, **options: Any
) -> list[str]:
    requests = [
        JobRequest("pixellab.generate", {"operation": operation, "params": params}, **options)
        for _ in range(n)
    ]
    return [j.id for j in await app.queue.enqueue_many(requests)]


def terminal(app: App, ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = [(await app.get(i)).state for i in ids]
        return all(s in (JobState.COMPLETED, JobState.DEAD) for s in states)

    return check


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


@pytest.mark.parametrize(
    "fault",
    [
        status_fault(500, body={"detail": "Internal error"}),
        gateway_fault(502),
        status_fault(503, text="Service Unavailable", content_type="text/plain"),
    ],
)
async def test_5xx_on_submit_is_retried(
    setup: tuple[App, PixelLab], fake: FakePixelLab, fault: Any
) -> None:
    app, _ = setup
    fake.add_fault("POST /v2/create-image-*", fault, times=1)
    [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and job.retry_count == 1
    assert job.history[0].error is not None and job.history[0].error.kind is ErrorKind.SERVER
    assert fake.stats()["charges"] == 1


async def test_connect_error_is_retried(
    setup: tuple[App, PixelLab], fake: FakePixelLab, tmp_path: Path
) -> None:
    app, integration = setup
    await integration.aclose()
    integration.settings = settings(fake, tmp_path / "out", base_url="http://127.0.0.1:9/v2")
    [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.DEAD and job.last_error is not None
    assert job.last_error.kind is ErrorKind.NETWORK and job.retry_count == 2
    assert job.last_error.details["maybe_charged"] is False


@pytest.mark.parametrize(
    "fault", [drop_fault(after_body=False), drop_fault(after_body=True), hang_fault()]
)
async def test_uncertain_sync_submission_is_resubmitted_once(
    fake: FakePixelLab, tmp_path: Path, fault: Any
) -> None:
    fake.add_fault("POST /v2/create-image-*", fault, times=2)
    async with pixellab_app(fake, tmp_path, max_retries=3, read_timeout=0.4) as (app, _):
        [job_id] = await enqueue(app, "create-image-pixflux", PIXFLUX)
        await run_until(app, terminal(app, [job_id]))
        entry = await app.dlq.get(job_id)
    assert entry.error_kind is ErrorKind.SUBMISSION_UNCERTAIN
    assert fake.stats()["submits_by_client_job"] == {job_id: 2}  # the first, and one resubmit


async def test_uncertain_async_submission_goes_to_the_dlq(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    fake.add_fault("POST /v2/generate-image-v2", accept_then_fail(drop=True), times=1)
    [job_id] = await enqueue(app, "generate-image-v2", PRO)
    await run_until(app, terminal(app, [job_id]))
    entry = await app.dlq.get(job_id)
    assert (
        entry.error_kind is ErrorKind.SUBMISSION_UNCERTAIN
        and "pay twice" in entry.job.last_error.message
    )  # type: ignore[union-attr]
    assert fake.stats()["submits_by_client_job"] == {job_id: 1}


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


async def test_poll_errors_resume_and_a_redrive_resumes_too(
    setup: tuple[App, PixelLab], fake: FakePixelLab
) -> None:
    app, _ = setup
    rule = fake.add_fault("GET /v2/background-jobs/*", gateway_fault(503), times=None)
    [job_id] = await enqueue(app, "generate-image-v2", PRO)
    await run_until(app, terminal(app, [job_id]))
    dead = await app.dlq.get(job_id)
    assert dead.error_kind is ErrorKind.SERVER and dead.job.attempts == 3 and dead.remote_job_id
    fake.remove_fault(rule)
    await app.dlq.redrive(job_id)
    await run_until(app, terminal(app, [job_id]))
    job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and job.remote_job_id == dead.remote_job_id
    assert fake.stats()["submits_by_client_job"] == {job_id: 1}  # 0 new submits
    assert fake.stats()["charges_by_client_job"] == {job_id: 1}


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
@pytest.mark.parametrize("retry_after", [1, None])
async def test_rate_limits_spend_no_retry_budget_and_are_shared(
    fake: FakePixelLab, tmp_path: Path, retry_after: int | None, backend: str
) -> None:
    options = FakeOptions(
        tokens={KEY: "main"},
        max_concurrent_jobs=2,
        retry_after_seconds=retry_after,
        complete_after_polls=3,
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


async def test_breaker_opens_on_a_burst_of_server_errors(
    fake: FakePixelLab, tmp_path: Path
) -> None:
    fake.add_fault("POST /v2/create-image-*", gateway_fault(502), times=3)
    events: list[str] = []
    breaker = BreakerSettings(failure_threshold=3, cooldown=0.3, max_cooldown=0.6)
    async with pixellab_app(fake, tmp_path, max_retries=5, breaker=breaker) as (app, _):
        app.events.subscribe(
            lambda e: events.append(e.name.value), names=["circuit_opened", "circuit_closed"]
        )
        ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=4)
        await run_until(app, terminal(app, ids), concurrency=1)
        states = [(await app.get(i)).state for i in ids]
    assert states == [JobState.COMPLETED] * 4
    assert events == ["circuit_opened", "circuit_closed"]


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


async def test_uncertain_resubmits_are_a_setting(fake: FakePixelLab, tmp_path: Path) -> None:
    fake.add_fault("POST /v2/generate-image-v2", accept_then_fail(drop=True), times=1)
    async with pixellab_app(fake, tmp_path, uncertain_resubmits_async=1) as (app, _):
        [job_id] = await enqueue(app, "generate-image-v2", PRO)
        await run_until(app, terminal(app, [job_id]))
        job = await app.get(job_id)
    assert job.state is JobState.COMPLETED and job.meta["uncertain_resubmits"] == 1
    # the price of allowing it: the lost submission was billed too
    assert fake.stats()["submits_by_client_job"] == {job_id: 2}
    assert fake.stats()["charges_by_client_job"] == {job_id: 2}
