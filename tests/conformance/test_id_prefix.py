"""Finding jobs by the start of their id (the command line's short ids), on every backend."""

from __future__ import annotations

from genqueue import App, FakeClock
from genqueue.job import Job


async def test_ids_with_a_prefix_are_found_sorted_and_capped(app: App, clock: FakeClock) -> None:
    ids = ["abcd" + "0" * 27 + str(n) for n in range(3)] + ["abce" + "1" * 28, "f" * 32]
    now = clock.now()
    queues = ["a", "a", "b", "b", "c"]
    jobs = [
        Job(id=i, task="t", queue=q, created_at=now, run_at=now)
        for i, q in zip(ids, queues, strict=True)
    ]
    await app.backend.enqueue(jobs)
    assert await app.backend.job_ids_with_prefix("abcd", 10) == ids[:3]  # across queues
    assert await app.backend.job_ids_with_prefix("abc", 10) == ids[:4]
    assert await app.backend.job_ids_with_prefix("abcd", 2) == ids[:2]
    assert await app.backend.job_ids_with_prefix(ids[4], 10) == [ids[4]]
    assert await app.backend.job_ids_with_prefix("0123", 10) == []
