"""A queue's slot moved to another master while a worker drains it (as ``redis-cli
--cluster reshard`` moves slots).

Three masters, six queues. While one app's worker drains 1,200 jobs (and a producer is
still enqueueing), the slots of two queues are migrated key by key, the way ``redis-cli
--cluster reshard`` does it: the target is marked IMPORTING and the source MIGRATING, the
keys move with MIGRATE (one at a time, 50 ms apart, so that the queues' scripts meet
their slot half-moved), then every master is told the slot's new owner. Meanwhile the
scripts of those queues are redirected (ASK) and told to try again (TRYAGAIN: each
touches keys on both nodes), and the backend retries them. Then every acknowledged job
ran exactly once and ended as it should (completed, or dead-lettered for the tenth that
fail), the worker never stopped, and the migration never met a key on the target that
was still on the source (BUSYKEY, which would stop ``redis-cli`` half-way).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from redis.crc import key_slot

import redis
from genqueue import (
    App,
    JobRequest,
    JobState,
    RetryPolicy,
    TaskError,
    Worker,
    WorkerSettings,
)
from genqueue.backends.redis.keys import KeySchema
from tests.redis_cluster import LocalCluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]
N = 1200
BATCH = 20
QUEUES = [f"q{i}" for i in range(6)]
MOVED = ("q0", "q1")
PREFIX = "rs"
SETTINGS = WorkerSettings(
    concurrency=20, lease_seconds=10, poll_interval=0.05, reclaim_interval=0.5
)


def _slot(queue: str) -> int:
    return key_slot(KeySchema(PREFIX).queue(queue)["ready"].encode())


def _node_id(port: int) -> str:
    with redis.Redis(port=port) as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def _migrate(cluster: LocalCluster, slot: int, source: int, target: int) -> int:
    """Move one slot from the master on ``source`` to the one on ``target`` with the
    commands redis-cli sends; how many keys moved."""
    source_id, target_id = _node_id(source), _node_id(target)
    moved = 0
    with redis.Redis(port=source) as src, redis.Redis(port=target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1)
            if not keys:
                break
            try:
                src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 60000, "KEYS", *keys)
            except redis.ResponseError as exc:
                detail = [
                    (k, src.type(k), dst.execute_command("ASKING") and dst.type(k)) for k in keys
                ]
                raise AssertionError(
                    f"MIGRATE {keys}: {exc}; (key, source, target) types: {detail}"
                ) from exc
            moved += len(keys)
            time.sleep(0.05)  # scripts of the queue meet the slot half-moved
        for node in cluster.nodes:
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


async def test_a_queue_slot_moved_while_its_jobs_run() -> None:
    cluster = LocalCluster(masters=3).start()
    try:
        await _run(cluster)
    finally:
        cluster.close()


async def _run(cluster: LocalCluster) -> None:
    app = App(cluster.url(PREFIX), retry=RetryPolicy(max_retries=0))
    runs: Counter[str] = Counter()

    @app.task("t")
    async def t(ctx: Any) -> None:
        await asyncio.sleep(0.002)
        runs[ctx.id] += 1
        if ctx.job.data["i"] % 10 == 0:  # some dead letters: the DLQ's keys move too
            raise TaskError("bad prompt", kind="validation")

    acked: set[str] = set()

    async def produce() -> None:
        for n, start in enumerate(range(0, N, BATCH)):
            queue = QUEUES[n % len(QUEUES)]
            requests = [JobRequest("t", {"i": start + i}, queue=queue) for i in range(BATCH)]
            jobs = await app.queue.enqueue_many(requests)
            acked.update(job.id for job in jobs)
            await asyncio.sleep(0.01)

    async with app:
        worker = Worker(app, queues=QUEUES, settings=SETTINGS)
        runner = asyncio.create_task(worker.run())
        producer = asyncio.create_task(produce())
        deadline = time.monotonic() + 60
        while len(runs) < N * 0.3:
            assert time.monotonic() < deadline, "the worker did not start"
            await asyncio.sleep(0.01)
        masters = [s for s in cluster.node_states() if s.role == "master"]
        moves = []
        for queue in MOVED:
            source = cluster.master_of_slot(_slot(queue)).port
            target = next(s.port for s in masters if s.port != source)
            began = time.monotonic()
            keys = await asyncio.to_thread(_migrate, cluster, _slot(queue), source, target)
            moves.append((queue, keys, round(time.monotonic() - began, 2)))
            assert cluster.master_of_slot(_slot(queue)).port == target
        await asyncio.wait_for(producer, 40)
        deadline = time.monotonic() + 40
        while len(runs) < len(acked):
            assert not runner.done(), "the worker stopped instead of riding out the move"
            if time.monotonic() > deadline:
                left = [await app.get(i) for i in sorted(acked - set(runs))]
                raise AssertionError(
                    f"{len(left)} jobs did not run: "
                    + "; ".join(
                        f"{j.id} {j.queue} {j.state.value}" if j else "gone" for j in left[:20]
                    )
                    + f"; counts {await app.backend.counts()}"
                )
            await asyncio.sleep(0.05)
        worker.request_stop()
        await asyncio.wait_for(runner, 20)
        states = [(await app.get(i)) for i in sorted(acked)]

    redirected = _errors(cluster, "ASK") + _errors(cluster, "TRYAGAIN")
    print(
        f"\nresharded (queue, keys, seconds) {moves}; {len(acked)} jobs, "
        f"{sum(runs.values())} runs; calls redirected or told to try again: {redirected}"
    )
    assert len(acked) == N
    expected = {
        job.id: JobState.DEAD if job.data["i"] % 10 == 0 else JobState.COMPLETED
        for job in states
        if job is not None
    }
    assert len(expected) == N
    assert all(job is not None and job.state is expected[job.id] for job in states)
    assert set(runs) == acked
    assert max(runs.values()) == 1, "a job ran twice"
    assert all(keys > 0 for _, keys, _ in moves), "a moved slot held no keys: nothing was tested"
    assert redirected, "no call met a slot half-moved: nothing was tested"


def _errors(cluster: LocalCluster, name: str) -> int:
    """How many replies of error ``name`` the cluster's nodes have sent."""
    total = 0
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            total += int(client.info("errorstats").get(f"errorstat_{name}", {}).get("count", 0))
    return total
