"""The key layout's version (``<prefix>:layout``): written by the first process, and a
Redis laid out by a newer genqueue is refused at once, with what to do."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

import redis
from genqueue import App, ConfigError, DLQFilter, FakeClock
from genqueue.backends.redis import RedisBackend, migrate, scripts
from genqueue.backends.redis.layout import LAYOUT
from genqueue.cli.main import run
from genqueue.errors import InvalidInput
from genqueue.job import JobState
from tests.conformance.helpers import make_dead
from tests.redis.layouts import as_layout_1, to_layout_1
from tests.redis_server import redis_url_for_test, session_server
from tests.redis_server import test_prefix as key_prefix

pytestmark = pytest.mark.redis


async def _raw(key: str, value: str | None = None) -> bytes | None:
    client = aioredis.Redis.from_url(session_server().url())
    try:
        if value is not None:
            await client.set(key, value)
        result: bytes | None = await client.get(key)
        return result
    finally:
        await client.aclose()


async def test_the_first_process_writes_the_layout_and_later_ones_accept_it() -> None:
    key = f"{key_prefix()}:layout"
    for _ in range(2):
        async with App(redis_url_for_test()):
            pass
        assert await _raw(key) == str(LAYOUT).encode()


@pytest.mark.parametrize("stored", [str(LAYOUT + 1), "v9"])
async def test_a_layout_this_genqueue_does_not_know_is_refused(stored: str) -> None:
    await _raw(f"{key_prefix()}:layout", stored)
    app = App(redis_url_for_test())
    with pytest.raises(ConfigError, match=f"layout '{stored}'.*upgrade genqueue"):
        await app.open()
    assert await _raw(f"{key_prefix()}:layout") == stored.encode()  # left as it was


def test_the_cli_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_raw(f"{key_prefix()}:layout", str(LAYOUT + 1)))
    code = run(["jobs", "list", "--backend", redis_url_for_test()])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "upgrade genqueue" in err


async def test_a_layout_1_redis_is_migrated_and_its_dead_jobs_still_work() -> None:
    """Layout 2 keeps a dead job whole in its entry and spells its index members' tails
    shorter: opening a layout 1 Redis rewrites the members, and dead jobs layout 1 stored
    (body and hot record apart) are read, listed, redriven, deleted and expired."""
    clock = FakeClock()
    key = f"{key_prefix()}:layout"
    async with App(redis_url_for_test(), clock=clock) as app:
        old = await make_dead(app, 4, retention=60)
        new = await make_dead(app, 2, offset=100, retention=60)
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        client = redis.Redis.from_url(backend.url.split("?")[0])
        keys = backend.keys.queue("dlqtest")
        as_layout_1(client, keys, [*old, *new])
        client.set(key, "1")
    assert client.hget(keys["hot"], new[0]) is not None  # stored as layout 1 did
    assert _tails(client, keys) == {48}
    async with App(redis_url_for_test(), clock=clock) as app:
        backend = app.backend
        assert client.get(key) == b"2"  # migrated when opened
        assert _tails(client, keys) == {32}
        assert client.exists(f"{key_prefix()}:migrating") == 0
        entry = await app.dlq.get(old[0])
        assert entry.job.state is JobState.DEAD and len(entry.history) == 1
        assert entry.job.last_error is not None and entry.job.last_error.stack == "Traceback..."
        assert [e.job_id for e in (await app.dlq.list()).items] == [*old, *new][::-1]
        assert (await app.get(new[0])).created_at == (await app.get(old[0])).created_at
        for dead_id in (old[1], new[1]):  # an id a dead job has is taken
            again = replace(await app.get(dead_id), state=JobState.QUEUED, attempts=0)
            with pytest.raises(InvalidInput, match="already exists"):
                await backend.enqueue([again])
        await app.dlq.redrive(old[0])
        await app.dlq.redrive(new[0])
        assert {(await app.get(i)).state for i in (old[0], new[0])} == {JobState.QUEUED}
        assert client.hget(keys["dlq"], new[0]) is None and await app.dlq.count() == 4
        [fresh] = await make_dead(app, 1, queue="fresh")  # stored whole
        assert client.hget(backend.keys.queue("fresh")["hot"], fresh) is None
        await app.dlq.delete(fresh)
        assert await app.dlq.delete_many([old[1], new[1]]) == [old[1], new[1]]
        clock.advance(70)
        assert await app.dlq.expire() == 2  # old[2], old[3]
        assert await app.dlq.count() == 0 and (await app.dlq.stats()).total == 0
        for name in ("dlq", "dlq:kind", "dlq:counts", "jobs:dead"):
            assert client.exists(keys[name]) == 0, name
    client.close()


def _tails(client: redis.Redis, keys: object) -> set[int]:
    """The lengths of the tails of every DLQ value index member (after the value)."""
    found = set()
    for index in ("dlq:user", "dlq:kind", "dlq:task", "dlq:fp"):
        for member in client.zrange(keys[index], 0, -1):  # type: ignore[index]
            found.add(len(member) - 4 - int(member[:4]))
    return found


async def test_processes_that_open_it_together_wait_for_one_migration() -> None:
    clock = FakeClock()
    async with App(redis_url_for_test(), clock=clock) as app:
        ids = await make_dead(app, 30, user_id="ann")
        client, keys = to_layout_1(app, ids)
    apps = [App(redis_url_for_test(), clock=clock) for _ in range(3)]
    await asyncio.gather(*(a.open() for a in apps))
    try:
        assert _tails(client, keys) == {32}
        for a in apps:
            assert await a.dlq.count(DLQFilter(user_id="ann")) == 30
    finally:
        await asyncio.gather(*(a.close() for a in apps))
        client.close()


async def test_a_migration_cut_short_is_taken_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step is one bounded script call: a process that dies between them leaves a
    Redis the next process migrates from where it is."""
    clock = FakeClock()
    async with App(redis_url_for_test(), clock=clock) as app:
        ids = await make_dead(app, 25, user_id="ann")
        client, keys = to_layout_1(app, ids)
    monkeypatch.setattr(migrate, "RETAIL_BATCH", 10)
    calls = 0
    real = scripts.dlq_retail

    async def dies(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("killed")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scripts, "dlq_retail", dies)
    with pytest.raises(ConnectionError):
        await App(redis_url_for_test(), clock=clock).open()
    assert client.get(f"{key_prefix()}:layout") == b"1" and _tails(client, keys) == {32, 48}
    monkeypatch.setattr(scripts, "dlq_retail", real)
    async with App(redis_url_for_test(), clock=clock) as app:
        assert _tails(client, keys) == {32}
        page = await app.dlq.list(DLQFilter(user_id="ann"), limit=100)
        assert sorted(e.job_id for e in page.items) == sorted(ids)
    client.close()


async def test_queues_without_a_layout_key_are_layout_1() -> None:
    """Releases before the layout key wrote none: their data is migrated, not misread."""
    clock = FakeClock()
    async with App(redis_url_for_test(), clock=clock) as app:
        ids = await make_dead(app, 5, user_id="ann")
        client, keys = to_layout_1(app, ids)
        client.delete(f"{key_prefix()}:layout")
    async with App(redis_url_for_test(), clock=clock) as app:
        assert client.get(f"{key_prefix()}:layout") == b"2"
        assert _tails(client, keys) == {32}
        page = await app.dlq.list(DLQFilter(user_id="ann"))
        assert [e.job_id for e in page.items] == ids[::-1]
    client.close()
