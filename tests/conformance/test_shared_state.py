"""Shared state and concurrency slots: what provider cooldowns and breakers are built on."""

from __future__ import annotations

from genqueue import App, FakeClock


async def test_compare_and_set(app: App) -> None:
    backend = app.backend
    assert await backend.state_get("k") is None
    v1 = await backend.state_put("k", {"until": 5}, expect_version=0)
    assert v1 is not None
    assert await backend.state_get("k") == ({"until": 5}, v1)
    assert await backend.state_put("k", {"until": 6}, expect_version=0) is None  # exists
    v2 = await backend.state_put("k", {"until": 6}, expect_version=v1)
    assert v2 is not None and v2 > v1
    assert await backend.state_put("k", {"until": 7}, expect_version=v1) is None  # stale
    assert await backend.state_get("k") == ({"until": 6}, v2)


async def test_state_expires(app: App, clock: FakeClock) -> None:
    backend = app.backend
    version = await backend.state_put("cool", [1, 2], expect_version=0, ttl=10)
    assert version is not None
    clock.advance(9.9)
    assert await backend.state_get("cool") == ([1, 2], version)
    clock.advance(0.1)
    assert await backend.state_get("cool") is None
    assert await backend.state_put("cool", [3], expect_version=0) is not None  # expired = absent


async def test_slots_limit_renew_release_and_expire(app: App, clock: FakeClock) -> None:
    backend = app.backend
    assert await backend.slot_acquire("s", "a", 2, 30)
    assert await backend.slot_acquire("s", "b", 2, 30)
    assert not await backend.slot_acquire("s", "c", 2, 30)
    assert await backend.slot_acquire(
        "s", "a", 1, 30
    )  # a holder keeps its slot when the limit drops
    assert await backend.slot_count("s") == 2
    await backend.slot_release("s", "b")
    assert await backend.slot_acquire("s", "c", 2, 5)
    clock.advance(5)
    assert await backend.slot_count("s") == 1  # c expired
    assert await backend.slot_holders("s") == ["a"]
    assert await backend.slot_acquire("s", "d", 2, 5)
    assert sorted(await backend.slot_holders("s")) == ["a", "d"]
    assert await backend.slot_count("other") == 0
    assert await backend.slot_holders("other") == []
