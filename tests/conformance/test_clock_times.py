"""Every time genqueue stores or emits comes from the app's clock (a FakeClock here)."""

from __future__ import annotations

from genqueue import App, FakeClock, TaskError
from genqueue.serialization import iso
from tests.conformance.helpers import Recorder
from tests.conftest import drain


def test_fake_clock_starts_at_a_documented_instant() -> None:
    assert iso(FakeClock().now()) == "2026-01-01T00:00:00.000Z"
    assert FakeClock(start=10.0).now() == 10.0


async def test_event_and_stored_times_agree_with_the_fake_clock(app: App, clock: FakeClock) -> None:
    @app.task("fails")
    async def fails(ctx):  # type: ignore[no-untyped-def]
        ctx.progress(50, "half")
        await ctx.flush()
        raise TaskError("the key was revoked", kind="auth")

    recorder = Recorder(app)
    clock.advance(123.25)  # far from the machine's clock, and from FakeClock's start
    enqueued_at = clock.now()
    job = await app.enqueue("fails", {"prompt": "cat"})
    assert job.created_at == enqueued_at
    clock.advance(10)
    failed_at = clock.now()
    await drain(app)

    assert {e.at for e in recorder.events if e.name.value == "job_enqueued"} == {enqueued_at}
    later = [e for e in recorder.events if e.name.value != "job_enqueued"]
    assert later and {e.at for e in later} == {failed_at}
    entry = await app.dlq.get(job.id)
    assert entry.failed_at == failed_at and entry.job.finished_at == failed_at
    assert entry.job.progress is not None and entry.job.progress.updated_at == failed_at
    assert entry.job.history[-1].started_at == failed_at

    clock.advance(5)
    await app.dlq.delete(job.id)
    assert recorder.events[-1].name.value == "dlq_delete"
    assert recorder.events[-1].at == clock.now()
