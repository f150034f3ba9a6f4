"""DLQ retention on Redis without an expiry index: ``lua/dlq_expire.lua`` walks each
kind's range of ``dlq:kind`` oldest failure first."""

from __future__ import annotations

import pytest

from genqueue import App, ErrorKind, FakeClock
from tests.conformance.helpers import make_dead
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


async def test_no_expiry_index_is_kept_and_old_members_go_with_their_entries() -> None:
    """New entries cost no ``dlq:expires`` member. Members that an older release wrote
    leave with their entries, and the key goes once the DLQ is empty."""
    app = App(redis_url_for_test(), clock=FakeClock())
    async with app:
        ids = await make_dead(app, 3)
        backend = app.backend
        redis, key = backend.conn.redis, backend.keys.queue("dlqtest")["dlq:expires"]
        assert await redis.exists(key) == 0
        await redis.zadd(key, {job_id: 1e12 for job_id in ids})  # as an older release did
        await app.dlq.delete(ids[0])
        assert await redis.zrange(key, 0, -1) == [job_id.encode() for job_id in sorted(ids[1:])]
        await app.dlq.purge()
        assert await redis.exists(key) == 0


async def test_an_entry_due_behind_an_older_one_of_its_kind_goes_with_it() -> None:
    """Expiry stops at a kind's first entry that is not due. Only a retention shortened
    between two failures puts a due entry behind one that is not: it goes when the older
    one does, and entries of other kinds are not held up."""
    clock = FakeClock()
    app = App(redis_url_for_test(), clock=clock)
    async with app:
        [older] = await make_dead(app, 1, retention=100)
        [behind] = await make_dead(app, 1, retention=5, offset=10)
        [other] = await make_dead(app, 1, retention=5, offset=10, kind=ErrorKind.AUTH)
        clock.advance(20)
        assert await app.backend.dlq_expire(10) == [other]
        clock.advance(81)
        assert sorted(await app.backend.dlq_expire(10)) == sorted([older, behind])
