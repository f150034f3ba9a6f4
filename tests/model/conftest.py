"""The stateful model test runs on every backend, PostgreSQL and Redis Cluster included, and
checks that every Lua script call stays in one Cluster slot (tests/slot_guard.py)."""

import math

import pytest

from genqueue.backends.redis import fanin
from tests.slot_guard import backend_kind, one_slot_per_script

__all__ = ["backend_kind", "one_slot_per_script"]


@pytest.fixture(autouse=True)
def oldest_due_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model checks that a fetch takes the oldest due job; Redis's fairness rule (a
    queue kept waiting goes first, tests/redis/test_fanin.py) depends on the wall clock,
    so it is off here."""
    monkeypatch.setattr(fanin, "FAIR_WAIT", math.inf)
