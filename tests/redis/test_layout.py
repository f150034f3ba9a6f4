"""The key layout's version (``<prefix>:layout``): written by the first process, and a
Redis laid out by a newer genqueue is refused at once, with what to do."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from genqueue import App, ConfigError
from genqueue.backends.redis.layout import LAYOUT
from genqueue.cli.main import run
from tests.redis_server import redis_url_for_test, session_server
from tests.redis_server import test_prefix as key_prefix

pytestmark = pytest.mark.redis


async def _raw(key: str, value: str | None = None) -> bytes | None:
    client = aioredis.Redis.from_url(session_server().url())
    try:
        if value is not None:
            await client.set(key, value)
        result: bytes | None = await client.get(key)
        return result
    finally:
        await client.aclose()


async def test_the_first_process_writes_the_layout_and_later_ones_accept_it() -> None:
    key = f"{key_prefix()}:layout"
    for _ in range(2):
        async with App(redis_url_for_test()):
            pass
        assert await _raw(key) == str(LAYOUT).encode()


@pytest.mark.parametrize("stored", [str(LAYOUT + 1), "v9"])
async def test_a_layout_this_genqueue_does_not_know_is_refused(stored: str) -> None:
    await _raw(f"{key_prefix()}:layout", stored)
    app = App(redis_url_for_test())
    with pytest.raises(ConfigError, match=f"layout '{stored}'.*upgrade genqueue"):
        await app.open()
    assert await _raw(f"{key_prefix()}:layout") == stored.encode()  # left as it was


def test_the_cli_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_raw(f"{key_prefix()}:layout", str(LAYOUT + 1)))
    code = run(["jobs", "list", "--backend", redis_url_for_test()])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "upgrade genqueue" in err
