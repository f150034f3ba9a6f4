"""A queue's slot moved to another master while workers drain it (resharding).

Three masters; 1,200 jobs over six queues. While a worker drains them, the slots of two
queues are migrated key by key to another master (``CLUSTER SETSLOT ... IMPORTING`` /
``MIGRATING``, ``MIGRATE`` one key at a time, then ``SETSLOT ... NODE``), the way
``redis-cli --cluster reshard`` does it. Mid-migration a script that names keys on both
sides gets ``TRYAGAIN`` and one whose keys are gone gets ``ASK``: genqueue must ride this
out. Then every job ends completed exactly once (no lease expired, so none ran twice),
and the moved queues' keys are on their new master.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest
from redis.crc import key_slot

import redis
from genqueue import App, JobRequest, JobState, Worker, WorkerSettings
from genqueue.backends.redis.keys import KeySchema
from tests.redis_cluster import LocalCluster
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]
N = 1200
QUEUES = [f"q{i}" for i in range(6)]
PREFIX = "rs"
SETTINGS = WorkerSettings(concurrency=20, lease_seconds=30, poll_interval=0.05)


def _slot(queue: str) -> int:
    return key_slot(KeySchema(PREFIX).queue(queue)["ready"].encode())


def _node_id(client: redis.Redis) -> str:
    return str(client.execute_command("CLUSTER MYID").decode())


def _migrate(cluster: LocalCluster, slot: int, target: RedisServer, moved: list[int]) -> None:
    """Move ``slot`` to ``target`` one key at a time, slowly (a long mid-migration)."""
    source = cluster.master_of_slot(slot)
    src = redis.Redis(port=source.port)
    dst = redis.Redis(port=target.port)
    src_id, dst_id = _node_id(src), _node_id(dst)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        moved.append(slot)
        time.sleep(0.02)
    for node in cluster.nodes:
        redis.Redis(port=node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)


async def test_queues_moved_to_another_master_mid_run_lose_nothing() -> None:
    cluster = LocalCluster(masters=3).start()
    try:
        url = cluster.url(PREFIX)
        runs: Counter[str] = Counter()
        app = App(url)

        @app.task("t")
        async def t(ctx: Any) -> None:
            await asyncio.sleep(0.005)
            runs[ctx.id] += 1

        async with app:
            requests = [JobRequest("t", {"i": i}, queue=QUEUES[i % 6]) for i in range(N)]
            ids = [job.id for job in await app.queue.enqueue_many(requests)]
            moving = QUEUES[:2]
            targets = [
                next(n for n in cluster.nodes[:3] if n is not cluster.master_of_slot(_slot(q)))
                for q in moving
            ]
            worker = Worker(app, queues=QUEUES, settings=SETTINGS)
            runner = asyncio.create_task(worker.run())
            moved: list[int] = []
            while sum(runs.values()) < N // 5:
                await asyncio.sleep(0.01)
            migrations = [
                threading.Thread(target=_migrate, args=(cluster, _slot(q), target, moved))
                for q, target in zip(moving, targets, strict=True)
            ]
            for thread in migrations:
                thread.start()
            while any(thread.is_alive() for thread in migrations):
                await asyncio.sleep(0.05)
            done_during = sum(runs.values())
            async with asyncio.timeout(60):
                while sum(runs.values()) < N:
                    assert not runner.done(), runner.exception()
                    await asyncio.sleep(0.05)
            worker.request_stop()
            await runner
            states = Counter([(await app.get(i)).state for i in ids])
        assert moved and done_during < N, "the migration ran while jobs were being drained"
        assert states == {JobState.COMPLETED: N}
        assert set(runs) == set(ids) and max(runs.values()) == 1
        for queue, target in zip(moving, targets, strict=True):
            assert cluster.master_of_slot(_slot(queue)) is target
    finally:
        cluster.close()
