"""A job named by its id alone: found in one round trip when the queues are few, found in
a queue made after this process read the list of queues, and found among many queues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from genqueue import App, Job, JobRequest
from genqueue.backends.redis.reads import READ_EVERYWHERE_MAX
from genqueue.errors import DeadLetterNotFound, JobNotFound
from tests.conformance.helpers import make_dead
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


async def commands(app: App) -> dict[str, int]:
    stats: dict[str, Any] = await app.backend.conn.redis.info("commandstats")  # type: ignore[attr-defined]
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def sent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands the client sent (those scripts call are counted too, and left out)."""
    client = ("evalsha", "smembers", "hexists")
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in client if after.get(k, 0) - before.get(k, 0)
    }


async def test_a_job_nobody_remembers_is_read_in_one_round_trip(
    make_server: Callable[..., RedisServer],
) -> None:
    url = make_server().url()
    async with App(url, strict_tasks=False) as producer, App(url, strict_tasks=False) as reader:
        jobs = await producer.queue.enqueue_many(
            [JobRequest("t", {"i": i}, queue=f"q{i}") for i in range(3)]
        )
        assert (await reader.get(jobs[0].id)).id == jobs[0].id  # reads the list of queues
        before = await commands(reader)
        found = await reader.get(jobs[2].id)
        after = await commands(reader)
    assert found.queue == "q2" and found.data == {"i": 2}
    # The list of queues is trusted for a while: one pipeline of one read per queue.
    assert sent(before, after) == {"evalsha": 3}


async def test_a_job_in_a_queue_made_after_the_list_was_read_is_found(
    make_server: Callable[..., RedisServer],
) -> None:
    url = make_server().url()
    async with App(url, strict_tasks=False) as producer, App(url, strict_tasks=False) as reader:
        first = await producer.enqueue("t", queue="old")
        await reader.get(first.id)  # the reader now trusts ["old"] for a while
        job = await producer.enqueue("t", {"x": 1}, queue="new")
        assert (await reader.get(job.id)).queue == "new"
        with pytest.raises(DeadLetterNotFound):
            await reader.dlq.get(job.id)  # found, and not dead
        with pytest.raises(JobNotFound):
            await reader.get("0" * 32)


async def _one_in_each_queue(app: App, count: int) -> list[Job]:
    """One job in each of ``count`` queues, q00, q01, ..."""
    return await app.queue.enqueue_many(
        [JobRequest("t", {"i": i}, queue=f"q{i:02d}") for i in range(count)]
    )


async def test_among_many_queues_the_queue_is_probed_first(
    make_server: Callable[..., RedisServer],
) -> None:
    url = make_server().url()
    count = READ_EVERYWHERE_MAX + 4
    async with App(url, strict_tasks=False) as producer, App(url, strict_tasks=False) as reader:
        jobs = await _one_in_each_queue(producer, count)
        await reader.get(jobs[0].id)
        before = await commands(reader)
        found = await reader.get(jobs[-1].id)
        after = await commands(reader)
    assert found.queue == f"q{count - 1:02d}"
    assert sent(before, after) == {"hexists": count, "evalsha": 1}


async def test_among_many_queues_a_dead_job_is_found_by_its_entry(
    make_server: Callable[..., RedisServer],
) -> None:
    """A dead job is kept whole in its entry (no hot record): a second probe finds it."""
    url = make_server().url()
    count = READ_EVERYWHERE_MAX + 4
    async with App(url, strict_tasks=False) as producer, App(url, strict_tasks=False) as reader:
        await _one_in_each_queue(producer, count)
        [dead] = await make_dead(producer, 1, queue="qdead")  # a queue of its own
        before = await commands(reader)
        entry = await reader.dlq.get(dead)
        after = await commands(reader)
        assert (await reader.get(dead)).state.value == "dead"
    assert entry.job_id == dead and entry.job.queue == "qdead"
    # The list of queues, one probe of their hot records, one of their entries, the read.
    assert sent(before, after) == {"smembers": 1, "hexists": 2 * (count + 1), "evalsha": 1}
