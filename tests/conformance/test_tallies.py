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
