"""The stateful model test runs on every backend, PostgreSQL and Redis Cluster included, and
checks that every Lua script call stays in one Cluster slot (tests/slot_guard.py)."""

from tests.slot_guard import backend_kind, one_slot_per_script

__all__ = ["backend_kind", "one_slot_per_script"]
