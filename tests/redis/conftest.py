"""Fixtures for the Redis-specific tests: dedicated servers that tests may kill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.redis_server import RedisServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., RedisServer]]:
    """Start a dedicated redis-server (stopped after the test)."""
    started: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()
