"""Dead letters on Redis are stored compact (stacks once per queue, bodies compressed,
counters for stats), keep their full context, and entries stored before stay readable."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import redis
from genqueue import App, DLQFilter, ErrorKind, FakeClock
from genqueue.backends import deadbody
from genqueue.backends.base import Backend
from genqueue.backends.redis import RedisBackend, codec
from genqueue.backends.redis.keys import time_key, value_prefix
from genqueue.entry import DeadLetter
from tests.conformance.helpers import make_dead
from tests.redis.layouts import to_layout_1, whole
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


def _old_entry(entry: DeadLetter, _: list[str]) -> bytes:
    """An entry as genqueue stored it before version 2 (record and index members)."""
    record = entry.index_record()
    tail = time_key(entry.failed_at) + entry.job_id
    fp = value_prefix(entry.fingerprint)
    members = [
        tail,
        value_prefix(entry.user_id) + tail if entry.user_id is not None else "",
        value_prefix(entry.error_kind.value) + tail,
        value_prefix(entry.task) + tail,
        fp + tail,
        fp + value_prefix(entry.task) + tail,
    ]
    cost = [[u, codec.num(a), codec.num(-a)] for u, a in sorted(entry.job.cost.items())]
    return orjson.dumps({"r": record, "m": members, "x": codec.num(entry.expires_at), "c": cost})


def _old_move_args(move: Any) -> tuple[str | bytes, ...]:
    """A move as genqueue sent it before: plain JSON body, old entry, no stacks."""
    args = list(_NEW_MOVE_ARGS(move))
    if move.entry is not None:
        args[13] = orjson.dumps(move.job.to_record()).decode()
        args[14] = _old_entry(move.entry, []).decode()
        args[16] = ""
    return tuple(args)


_NEW_MOVE_ARGS = codec.move_args


def _client(app: App) -> tuple[redis.Redis, Any]:
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    client = redis.Redis.from_url(backend.url.split("?")[0])
    return client, backend.keys.queue("dlqtest")


async def test_dead_bodies_are_compact_and_complete() -> None:
    app = App(redis_url_for_test(), clock=FakeClock())
    async with app:
        ids = await make_dead(app, 20, message="upstream 500")
        client, keys = _client(app)
        # Kept whole in its entry's field: no body or hot record of its own.
        assert client.hget(keys["body"], ids[0]) is None
        assert client.hget(keys["hot"], ids[0]) is None
        head, entry_json, body = whole(client.hget(keys["dlq"], ids[0]))
        assert deadbody.is_packed(body) and head[0] == "1" and head[3] and head[4]
        stacks = client.hgetall(keys["dlq:stacks"])
        assert len(stacks) == 2 and set(stacks.values()) >= {b"Traceback...", b"20"}
        entry = await app.dlq.get(ids[0])
        assert entry.job.last_error is not None and entry.job.last_error.stack == "Traceback..."
        assert all(a.error and a.error.stack == "Traceback..." for a in entry.history)
        record = orjson.loads(entry_json)
        assert record["v"] == 2 and "m" not in record
        assert client.exists(keys["dlq:all"], keys["dlq:fptask"]) == 0
        await app.dlq.delete_many(ids[:19])
        assert client.hget(keys["dlq:stacks"], f"r:{deadbody.stack_key('Traceback...')}") == b"1"
        await app.dlq.delete(ids[19])
        assert client.exists(keys["dlq:stacks"], keys["dlq:counts"]) == 0
        client.close()


async def test_entries_stored_before_stay_readable_and_are_upgraded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entries stored before version 2 (they name their members themselves), in a layout
    1 Redis: opening it rewrites them as version 2, counted, with layout 2's members."""
    clock = FakeClock()
    async with App(redis_url_for_test(), clock=clock) as app:
        monkeypatch.setattr(codec, "move_args", _old_move_args)
        old = await make_dead(app, 6, user_id="ann", kind=ErrorKind.AUTH, task="a", message="k")
        nobody = await make_dead(app, 3, user_id=None, task="b", message="boom", offset=5)
        monkeypatch.setattr(codec, "move_args", _NEW_MOVE_ARGS)
        new = await make_dead(app, 4, user_id="ann", task="b", message="boom", offset=10)
        client, keys = to_layout_1(app, [*old, *nobody, *new])
        assert not deadbody.is_packed(client.hget(keys["body"], old[0]) or b"")
        assert client.zcard(keys["dlq:all"]) == 9  # the old entries only
    async with App(redis_url_for_test(), clock=clock) as app:
        assert client.exists(keys["dlq:all"], keys["dlq:fptask"]) == 0
        assert client.hget(keys["dlq:counts"], "exact") == b"1"
        page = await app.dlq.list(DLQFilter(user_id="ann", task="b"))
        assert [e.job_id for e in page.items] == new[::-1]
        assert len((await app.dlq.list()).items) == 13
        assert await app.dlq.count(DLQFilter(user_id="ann", error_kind="auth")) == 6
        assert (await app.dlq.get(old[0])).job.last_error is not None
        backend = app.backend
        stats = await app.dlq.stats()
        assert stats == await Backend.dlq_stats(backend, DLQFilter())
        assert stats.total == 13 and stats.by_user == {"ann": 10, "(none)": 3}
        assert isinstance(backend, RedisBackend) and await backend.upgrade_dlq("dlqtest") == 0
        assert await app.dlq.delete_many([*old, *new]) == [*old, *new]
        assert await app.dlq.count() == 3
        assert (await app.dlq.stats()).total == 3
        client.close()


async def test_two_field_filters_match_entries_however_they_were_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filter on two fields reads one index and tests the others: entries stored
    before version 2 and rewritten by Lua's encoder (which escapes '/' where orjson does
    not), entries of version 2 and values with quotes all match."""
    clock = FakeClock()
    user, quoted = "ann/b", 'bob "b"'
    async with App(redis_url_for_test(), clock=clock) as app:
        monkeypatch.setattr(codec, "move_args", _old_move_args)
        old = await make_dead(app, 3, user_id=user, task="img.gen")
        monkeypatch.setattr(codec, "move_args", _NEW_MOVE_ARGS)
        new = await make_dead(app, 2, user_id=user, task="img.gen", offset=5)
        other = await make_dead(app, 20, user_id=user, task="img.other", offset=10)
        client, keys = to_layout_1(app, [*old, *new, *other])
        await make_dead(app, 20, user_id=quoted, task="img.gen", offset=40)
    async with App(redis_url_for_test(), clock=clock) as app:  # rewrites the old entries
        assert b"\\/" in (client.hget(keys["dlq"], old[0]) or b"")
        client.close()
        wanted = DLQFilter(user_id=user, task="img.gen")
        assert await app.dlq.count(wanted) == 5
        page = await app.dlq.list(wanted)
        assert sorted(e.job_id for e in page.items) == sorted([*old, *new])
        assert await app.dlq.count(DLQFilter(user_id=user, error_kind="server")) == 25
        assert await app.dlq.count(DLQFilter(user_id=user, task="img.none")) == 0
        assert await app.dlq.count(DLQFilter(user_id=quoted, task="img.gen")) == 20
        assert await app.dlq.count(DLQFilter(user_id=quoted, task="img.other")) == 0
