"""The key schema: every script call stays in one Cluster slot; every .lua has a wrapper."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest
from redis.crc import key_slot

from genqueue import App, DLQFilter, FakeClock, JobRequest, JobState
from genqueue.backends.base import Lease, Move, RunningUpdate
from genqueue.backends.redis import RedisBackend, keys, scripts
from genqueue.backends.redis.connection import Connection
from tests.conformance.helpers import make_dead
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis

LUA = resources.files("genqueue.backends.redis") / "lua"


def test_every_script_has_exactly_one_wrapper() -> None:
    names = scripts.script_names()
    assert names, "no Lua scripts found"
    assert sorted(scripts.WRAPPERS) == names
    source = (resources.files("genqueue.backends.redis") / "scripts.py").read_text()
    for name in names:
        assert len(re.findall(rf"^async def {name}\(", source, re.M)) == 1, name
        assert f'SCRIPTS["{name}"]' in source, name


def test_every_script_opens_with_its_contract() -> None:
    for name in scripts.script_names():
        text = (LUA / f"{name}.lua").read_text()
        header = text.split("\n\n")[0]
        assert header.startswith(f"-- {name}:"), name
        for part in ("KEYS", "ARGV", "Returns"):
            assert f"-- {part}:" in header, (name, part)


# Every key argument in the Lua is a name bound from KEYS (or a helper's parameter that
# receives one): no script builds a key name.
_KEY_ARG = re.compile(r"redis\.call\('(\w+)',\s*([^,)]+)")
_KEY_NAMES = re.compile(
    r"^(K_[A-Z_]+|K_JOBS(\.\w+|\[\w+\])|K_DLQ_VALUES\[[\w +]+\]|KEYS\[\d\]|key)$"
)


def test_scripts_take_every_key_from_keys() -> None:
    sources = {p.name: p.read_text() for p in LUA.iterdir() if p.name.endswith(".lua")}
    sources["prelude.lua"] = (LUA / "lib" / "prelude.lua").read_text()
    for name, text in sources.items():
        for command, first in _KEY_ARG.findall(text):
            if command == "TIME":
                continue
            assert _KEY_NAMES.match(first.strip()), (name, command, first)
    # And the prelude binds KEYS in the order keys.QUEUE_KEYS lists them.
    prelude = sources["prelude.lua"]
    listed = re.findall(r"(\d+) ([\w:<>]+)", prelude.split("-- ARGV[1]")[0])
    assert [n for _, n in listed][:18] == list(keys.QUEUE_KEYS[:18])


def test_time_keys_sort_like_the_numbers() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e10, 1e10) for _ in range(2000)]
    values += [0.0, -0.0, 1.0, 1.0000000000000002, 1_800_000_000.000001, 1e-300, -1e-300]
    assert sorted(values, key=keys.time_key) == sorted(values)
    assert {len(keys.time_key(v)) for v in values} == {16}


async def test_lua_makes_the_same_time_keys() -> None:
    """Index members are built in Lua from an entry's failed_at: its time keys must be
    the ones Python's cursors and ranges are built with."""
    rng = random.Random(11)
    values = [rng.uniform(-1e10, 1e10) for _ in range(300)]
    values += [0.0, 1.0, 1.0000000000000002, 1_800_000_000.000001, 1e-300, -1e-300, -2.5]
    found = await _each_in_lua("time_key", [repr(v) for v in values])
    assert found == [keys.time_key(v) for v in values]


async def _each_in_lua(function: str, args: list[str]) -> list[str]:
    """A prelude function of each argument, called in Redis."""
    prelude = (LUA / "lib" / "prelude.lua").read_text()
    each = f"local out = {{}}\nfor i = 1, #ARGV do out[i] = {function}(ARGV[i]) end\nreturn out"
    async with App(redis_url_for_test()) as app:
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        found = await backend.conn.redis.eval(prelude + "\n" + each, 0, *args)
    return [v.decode() for v in found]


def test_dlq_tails_sort_like_time_then_id_and_give_the_id_back() -> None:
    rng = random.Random(5)
    pairs = [(rng.uniform(-1e10, 1e10), f"{rng.getrandbits(128):032x}") for _ in range(2000)]
    pairs += [(1.0, "0" * 32), (1.0, "f" * 32), (1.0000000000000002, "0" * 32)]
    assert sorted(pairs, key=lambda p: keys.dlq_tail(*p)) == sorted(pairs)
    for failed_at, job_id in pairs:
        tail = keys.dlq_tail(failed_at, job_id)
        assert len(tail) == keys.TAIL_LENGTH and max(tail) < keys.TAIL_END
        assert keys.dlq_member_id(keys.value_prefix("ann") + tail) == job_id


async def test_lua_spells_the_same_dlq_tails() -> None:
    rng = random.Random(13)
    digits = [
        keys.time_key(rng.uniform(-1e10, 1e10)) + f"{rng.getrandbits(128):032x}" for _ in range(300)
    ]
    digits += ["0" * 48, "f" * 48]
    found = await _each_in_lua("dlq_tail", digits)
    assert found == [keys.tail_of_hex(d) for d in digits]


async def test_each_script_call_hashes_to_one_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[tuple[str, list[str]]] = []
    original = Connection.evaluate

    async def spy(self: Connection, script: scripts.Script, keys: Sequence[str], args: Any) -> Any:
        recorded.append((script.name, list(keys)))
        return await original(self, script, keys, args)

    monkeypatch.setattr(Connection, "evaluate", spy)
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)
    async with app:
        await exercise_every_script(app, clock)
    exercised = {name for name, _ in recorded}
    assert exercised == set(scripts.script_names())
    for name, call_keys in recorded:
        slots = {key_slot(k.encode()) for k in call_keys}
        assert len(slots) == 1, (name, call_keys)
    queue_slots = {key_slot(keys.KeySchema("gq").queue(q).names[0].encode()) for q in QUEUES}
    assert len(queue_slots) == len(QUEUES)  # different queues may live on different nodes


QUEUES = ["default", "images", "a:b.c-d_e"]


async def exercise_every_script(app: App, clock: FakeClock) -> None:
    backend = app.backend
    assert isinstance(backend, RedisBackend)

    @app.task("t")
    async def t(ctx: Any) -> None:
        return None

    for queue in QUEUES:
        jobs = await app.queue.enqueue_many(
            [JobRequest("t", {"n": i}, queue=queue, idempotency_key=f"k{i}") for i in range(3)]
            + [JobRequest("t", {}, queue=queue, delay=5)]
        )
        claimed = await backend.fetch([queue], "w", 2, 30)
        assert len(claimed) == 2
        await backend.heartbeat([Lease(j.id, j.attempts) for j in claimed], 30)
        await backend.update_running(
            Lease(claimed[0].id, claimed[0].attempts),
            RunningUpdate(remote_job_id="r", meta={"m": 1}),
        )
        done = replace(claimed[0], state=JobState.COMPLETED, finished_at=clock.now())
        assert await backend.move([Move(done, JobState.ACTIVE, claimed[0].attempts)]) == [True]
        assert await backend.get(jobs[0].id) is not None
        clock.advance(6)
        assert await backend.promote(10) >= 1
    await backend.fetch(QUEUES, "w", 100, 30)
    await backend.purge_finished(clock.now() + 1, clock.now() + 1, 100)
    ids = await make_dead(app, 3)
    await app.dlq.delete(ids[0])
    assert await app.dlq.count(DLQFilter(user_id="u1")) == 2
    assert await app.dlq.count(DLQFilter(user_id="u1", task="t")) == 2  # dlq_scan
    assert (await app.dlq.stats()).total == 2
    assert await backend.upgrade_dlq("dlqtest") == 0  # nothing stored before counters
    queue_keys = backend.keys.queue("dlqtest")
    retail = await scripts.dlq_retail(
        backend.conn.evaluate, queue_keys, "", index="dlq:user", start="-", count=10
    )
    assert retail.rewritten == 0 and retail.start == ""  # nothing stored by layout 1
    clock.advance(8 * 24 * 3600)
    assert sorted(await backend.dlq_expire(10)) == sorted(ids[1:])
    await backend.state_put("cooldown:x", {"until": 1}, expect_version=0, ttl=5)
    await backend.state_get("cooldown:x")
    assert await backend.slot_acquire("slots:x", "a", 1, 5)
    assert await backend.slot_count("slots:x") == 1
    assert await backend.slot_holders("slots:x") != []
    await backend.slot_release("slots:x", "a")
    bucket = int(clock.now() // 60)
    await backend.tally_add(bucket, {"done:t": 2.0, "failed:t": 1.0}, keep=3600)
    assert await backend.tally_read(bucket, bucket) == {"done:t": 2.0, "failed:t": 1.0}


async def test_fetch_across_queues_takes_the_oldest_due_first() -> None:
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)

    @app.task("t")
    async def t(ctx: Any) -> None:
        return None

    async with app:
        order = []
        for queue in ("b", "a", "c", "a", "b"):
            order.append((await app.enqueue("t", {}, queue=queue)).id)
            clock.advance(1)
        late = await app.enqueue("t", {}, queue="c", delay=30)
        claimed = await app.backend.fetch(["a", "b", "c"], "w", 2, 30)
        assert {j.id for j in claimed} <= set(order)
        assert claimed[0].id == order[0]  # queue b holds the oldest job
        rest = await app.backend.fetch(["a", "b", "c"], "w", 10, 30)
        assert {j.id for j in claimed + rest} == set(order) and late.id not in order
        clock.advance(30)
        assert [j.id for j in await app.backend.fetch(["a", "b", "c"], "w", 10, 30)] == [late.id]
