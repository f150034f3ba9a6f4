"""genqueue.testing: what users get for their own tests."""

from __future__ import annotations

from genqueue import App, FakeClock, JobState, RetryPolicy, TaskError
from genqueue.testing import run_until_idle


async def test_run_until_idle_with_a_fake_clock() -> None:
    clock = FakeClock()
    app = App("memory://", clock=clock, retry=RetryPolicy(jitter=0))
    calls: list[int] = []

    @app.task("flaky")
    async def flaky(ctx):  # type: ignore[no-untyped-def]
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise TaskError("try again", kind="server")
        return "done"

    async with app:
        job = await app.enqueue("flaky", {})
        stats = await run_until_idle(app)
        assert stats == {"retrying": 1} and calls == [1]
        clock.advance(5)
        await run_until_idle(app)
        assert (await app.get(job.id)).state is JobState.COMPLETED and calls == [1, 2]
