"""Fixtures for the PostgreSQL-specific tests: a fresh schema per test on the machine's
server (tests/postgres_server.py), and a psycopg connection of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from genqueue import App, FakeClock
from tests.postgres_server import postgres_url_for_test, require_postgres


@pytest.fixture
def pg_url() -> str:
    """A backend URL with a schema of this test's own."""
    return postgres_url_for_test()


@pytest.fixture
async def pg_app(pg_url: str, clock: FakeClock) -> AsyncIterator[App]:
    app = App(pg_url, clock=clock)
    async with app:
        yield app


@pytest.fixture
async def user_conn() -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A connection the way an application opens its own (not in autocommit mode)."""
    conn = await psycopg.AsyncConnection.connect(require_postgres())
    try:
        yield conn
    finally:
        await conn.close()
