"""How a failed move to the DLQ surfaces: a ``dlq_write_failed`` event from the move
batcher, counted in the shared tallies (so the alert sees it from any process)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from genqueue import App, FakeClock
from genqueue.backends.base import Move
from genqueue.batcher import MoveBatcher
from genqueue.events import Event, EventName
from genqueue.job import JobState
from tests.conformance.helpers import make_dead


async def test_a_failed_move_to_the_dlq_is_an_event_and_a_tally(clock: FakeClock) -> None:
    async with App("memory://", clock=clock) as app:
        [job_id] = await make_dead(app, 1)
        entry = await app.dlq.get(job_id)
        seen: list[Event] = []
        app.events.subscribe(seen.append, [EventName.DLQ_WRITE_FAILED])

        calls = 0

        async def broken(moves: Sequence[Move]) -> list[bool]:
            nonlocal calls
            calls += 1
            raise OSError("disk full")

        app.backend.move = broken  # type: ignore[method-assign]
        dead = Move(entry.job, JobState.ACTIVE, entry.job.attempts, entry)
        done = Move(replace(entry.job, state=JobState.COMPLETED), JobState.ACTIVE, 1)

        batcher = MoveBatcher(app.backend, retries=1, events=app.events)
        with pytest.raises(OSError, match="disk full"):
            await batcher.submit(dead)
        with pytest.raises(OSError, match="disk full"):
            await batcher.submit(done)  # not a move to the DLQ: no event
        assert calls == 2
        [event] = seen
        assert event.fields == {
            "job_id": job_id,
            "task": "t",
            "queue": "dlqtest",
            "error_kind": "server",
            "error": "OSError",
        }

        # Without an event hub (the default) the batcher stays silent.
        with pytest.raises(OSError):
            await MoveBatcher(app.backend, retries=1).submit(dead)
        assert len(seen) == 1

        report = await app.analytics(900, top=0)
        assert report.total.dlq_write_failures == 1
        assert report.by_task["t"].dlq_write_failures == 1
