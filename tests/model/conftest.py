"""The model test runs on every backend, Redis Cluster included, with the one-slot check
of tests/slot_guard.py around it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ALL_BACKENDS
from tests.slot_guard import SlotGuard, guarded


@pytest.fixture(params=ALL_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def one_slot_per_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotGuard]:
    with guarded(monkeypatch) as guard:
        yield guard
