"""Filters on two or more DLQ fields: one index is read, and the other values are tested
inside Redis on their own indexes (``lua/dlq_scan.lua``)."""

from __future__ import annotations

import pytest

from genqueue import App, DLQFilter, ErrorKind, FakeClock
from genqueue.backends.redis import codec, listing
from genqueue.backends.redis.keys import QUEUE_KEYS, value_prefix
from tests.conformance.helpers import make_dead
from tests.redis.layouts import to_layout_1
from tests.redis.test_dlq_compact import _old_move_args
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


async def _all_pages(app: App, wanted: DLQFilter, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await app.dlq.list(wanted, cursor=cursor, limit=limit)
        ids += [e.job_id for e in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def test_sparse_matches_are_found_past_each_scans_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scan examines a few members per call (the budget, 3 here): one that finds no match
    in its budget is called again from where it stopped, so rare matches deep in the
    index (the task's: 12 entries, fewer than the user's 27) still come back, newest
    first, across pages, and a user whose id starts like another's is not taken for it."""
    monkeypatch.setattr(listing, "SCAN_BUDGET", 3)
    app = App(redis_url_for_test(), clock=FakeClock())
    async with app:
        rare = await make_dead(app, 2, user_id="u1", task="rare", offset=0)
        await make_dead(app, 20, user_id="u1", task="common", offset=10)
        older = await make_dead(app, 1, user_id="u1", task="rare", offset=-50)
        await make_dead(app, 5, user_id="u10", task="rare", offset=40)
        await make_dead(app, 4, user_id="u1", task="rare", kind=ErrorKind.AUTH, offset=60)
        wanted = DLQFilter(user_id="u1", task="rare", error_kind=ErrorKind.SERVER)
        expected = [*reversed(rare), *older]
        assert await _all_pages(app, wanted, limit=2) == expected
        assert await app.dlq.count(wanted) == 3
        assert await app.dlq.count(DLQFilter(user_id="u1", task="rare")) == 7
        assert await app.dlq.count(DLQFilter(user_id="u1", task="none")) == 0
        assert await _all_pages(app, DLQFilter(user_id="u", task="rare"), limit=5) == []


async def test_entries_rewritten_by_lua_match_values_it_escapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values with characters JSON encoders escape differently, on entries stored before
    version 2 and after, and on the old ones once Lua's encoder rewrote them: a scan
    matches them all on every field (it tests index members, built from the raw
    values)."""
    user = 'ann/ü "q" \\ x\t\x7f'
    clock = FakeClock()
    async with App(redis_url_for_test(), clock=clock) as app:
        monkeypatch.setattr(codec, "move_args", _old_move_args)
        old = await make_dead(app, 3, user_id=user, task="img.gen")
        monkeypatch.undo()
        new = await make_dead(app, 2, user_id=user, task="img.gen", offset=5)
        other = await make_dead(app, 4, user_id=user, task="img.other", offset=10)
        client, _ = to_layout_1(app, [*old, *new, *other])
        client.close()
    async with App(redis_url_for_test(), clock=clock) as app:  # rewrites the old entries
        entry = await app.dlq.get(new[0])
        assert entry is not None
        # Three values: one index is read, the other two are tested on theirs.
        wanted = DLQFilter(fingerprint=entry.fingerprint, user_id=user, task="img.gen")
        assert await app.dlq.count(wanted) == 5
        assert sorted(await _all_pages(app, wanted, limit=2)) == sorted([*old, *new])


def test_the_rarest_value_picks_the_index() -> None:
    """With exact counters, the index of the filter's rarest value is read and the others
    are matched; a value no entry has reads nothing. Without them, the usual order."""
    wanted = DLQFilter(user_id="ann", task="t", error_kind="auth")
    plan = listing._plan(wanted, {"u:ann": 500, "t:t": 7, "k:auth": 90})
    assert (plan.index, plan.prefixes) == ("dlq:task", [value_prefix("t")])
    # The rarer value is tested first: it leaves fewer candidates for the next.
    assert plan.probes == (("dlq:kind", value_prefix("auth")), ("dlq:user", value_prefix("ann")))
    assert listing._plan(wanted, None).index == "dlq:user"
    assert listing._plan(wanted, {"u:ann": 5, "t:t": 0, "k:auth": 9}).prefixes == []


async def test_counters_of_every_queue_choose_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counters are summed over the queues (one without dead letters counts for
    nothing), and a value none of them has finds nothing without a scan."""
    app = App(redis_url_for_test(), clock=FakeClock())
    async with app:
        await make_dead(app, 30, user_id="ann", task="busy", queue="q1")
        rare = await make_dead(app, 2, user_id="ann", task="rare", queue="q2", offset=5)
        await make_dead(app, 3, user_id="bob", task="rare", queue="q2", offset=9)
        backend = app.backend
        queues = ["q1", "q2", "empty"]
        wanted = DLQFilter(user_id="ann", task="rare")
        counts = await listing._counts(backend.conn, backend.keys, queues, wanted)
        assert counts == {"u:ann": 32, "t:rare": 5}
        scanned: list[str] = []  # the index each scan call read
        original = backend.conn.evaluate_many

        async def spy(calls: list, **kw: object) -> list:  # type: ignore[type-arg]
            scanned.extend(QUEUE_KEYS[int(args[1]) - 1] for _, _, args in calls)
            return await original(calls, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(backend.conn, "evaluate_many", spy)
        page = await app.dlq.list(wanted)
        assert sorted(e.job_id for e in page.items) == sorted(rare)
        assert set(scanned) == {"dlq:task"}  # 5 entries of the task, not the user's 32
        scanned.clear()
        assert (await app.dlq.list(DLQFilter(user_id="ann", task="none"))).items == []
        assert scanned == []
