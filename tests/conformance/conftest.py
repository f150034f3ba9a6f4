"""The conformance suite runs on every backend, PostgreSQL and Redis Cluster included, and
checks that every Lua script call stays in one Cluster slot (tests/slot_guard.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import CONFORMANCE_BACKENDS
from tests.slot_guard import SlotGuard, guarded


@pytest.fixture(params=CONFORMANCE_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def one_slot_per_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotGuard]:
    with guarded(monkeypatch) as guard:
        yield guard
