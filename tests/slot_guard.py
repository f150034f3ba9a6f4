"""Every Lua script call must touch keys of one Redis Cluster slot: checked while tests run.

``SlotGuard`` wraps ``Connection.evaluate`` and ``evaluate_many`` (the ways the Redis
backend runs a script) and records each call whose KEYS hash to more than one slot. The conformance
suite and the model test import the fixtures below in their conftest files: they run on
every backend (``backend_kind``) with the guard around every test, standalone Redis
included: a standalone server accepts a script that spans slots, so without this a new
script could break Redis Cluster silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from redis.crc import key_slot

from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from tests.conftest import CONFORMANCE_BACKENDS

#: Script calls checked in this test session, by script name.
CHECKED: Counter[str] = Counter()


class SlotGuard:
    def __init__(self) -> None:
        self.violations: list[tuple[str, list[str]]] = []

    def check(self, name: str, keys: Sequence[str]) -> None:
        CHECKED[name] += 1
        if len({key_slot(k.encode()) for k in keys}) != 1:
            self.violations.append((name, list(keys)))

    def assert_clean(self) -> None:
        assert not self.violations, (
            "Lua script calls whose KEYS span several Redis Cluster slots (keys.py: every key "
            f"of a call must share one hash tag): {self.violations[:5]}"
        )


@contextmanager
def guarded(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotGuard]:
    guard = SlotGuard()
    original = Connection.evaluate

    async def evaluate(
        self: Connection, script: scripts.Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        guard.check(script.name, keys)
        return await original(self, script, keys, args)

    original_many = Connection.evaluate_many

    async def evaluate_many(
        self: Connection,
        calls: Sequence[tuple[scripts.Script, Sequence[str], Sequence[Any]]],
        **options: Any,
    ) -> list[Any]:
        for script, keys, _ in calls:
            guard.check(script.name, keys)
        return await original_many(self, calls, **options)

    monkeypatch.setattr(Connection, "evaluate", evaluate)
    monkeypatch.setattr(Connection, "evaluate_many", evaluate_many)
    yield guard
    guard.assert_clean()


@pytest.fixture(params=CONFORMANCE_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Every backend, PostgreSQL and Redis Cluster included."""
    return str(request.param)


@pytest.fixture(autouse=True)
def one_slot_per_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotGuard]:
    with guarded(monkeypatch) as guard:
        yield guard
