"""Per-minute tallies, the storage of analytics: add, sum over a range, forget old ones."""

from __future__ import annotations

from genqueue import App


async def test_tallies_add_up_per_bucket_and_over_a_range(app: App) -> None:
    backend = app.backend
    assert await backend.tally_read(0, 10**9) == {}
    await backend.tally_add(100, {"succeeded": 2, "succeeded|t": 2}, keep=3600)
    await backend.tally_add(100, {"succeeded": 1, "dead|t": 1}, keep=3600)
    await backend.tally_add(101, {"succeeded": 5}, keep=3600)
    await backend.tally_add(105, {"succeeded": 7}, keep=3600)
    assert await backend.tally_read(100, 100) == {"succeeded": 3, "succeeded|t": 2, "dead|t": 1}
    assert (await backend.tally_read(100, 104))["succeeded"] == 8
    assert (await backend.tally_read(101, 105))["succeeded"] == 12
    assert await backend.tally_read(106, 200) == {}


async def test_tallies_older_than_keep_are_dropped(app: App) -> None:
    backend = app.backend
    await backend.tally_add(1000, {"x": 1}, keep=600)  # 10 minutes
    await backend.tally_add(1005, {"x": 1}, keep=600)
    await backend.tally_add(1012, {"x": 1}, keep=600)  # 1000 is now 12 minutes old
    found = await backend.tally_read(0, 2000)
    # Redis lets each key expire after ``keep`` on its own clock; the others prune on write.
    assert found["x"] in (2, 3)
    assert await backend.tally_read(1005, 1012) == {"x": 2}


async def test_tallies_read_bucket_by_bucket(app: App) -> None:
    backend = app.backend
    assert await backend.tally_buckets(0, 10**9) == {}
    await backend.tally_add(100, {"succeeded": 2, "dead|t": 1}, keep=3600)
    await backend.tally_add(100, {"succeeded": 1}, keep=3600)
    await backend.tally_add(102, {"succeeded": 5}, keep=3600)
    await backend.tally_add(105, {"dead": 7}, keep=3600)
    assert await backend.tally_buckets(100, 104) == {
        100: {"succeeded": 3, "dead|t": 1},
        102: {"succeeded": 5},
    }
    assert await backend.tally_buckets(101, 200) == {102: {"succeeded": 5}, 105: {"dead": 7}}
    assert await backend.tally_buckets(103, 104) == {}


async def test_the_default_bucket_reader_agrees(app: App) -> None:
    """``Backend.tally_buckets``'s default (bucket by bucket), for backends without one."""
    from genqueue.backends.base import Backend

    backend = app.backend
    await backend.tally_add(100, {"succeeded": 2}, keep=3600)
    await backend.tally_add(103, {"dead": 1}, keep=3600)
    assert await Backend.tally_buckets(backend, 99, 103) == await backend.tally_buckets(99, 103)
