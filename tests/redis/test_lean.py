"""The lean connections: the same bytes on the wire as redis-py's own packer, the same
errors, and a write that cannot finish still times out and drops the connection."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from genqueue.backends.redis.lean import (
    LeanConnection,
    LeanSSLConnection,
    LeanUnixConnection,
    lean_class,
)
from redis import exceptions as rex
from tests.redis_server import RedisServer

ARGS = [
    ("EVALSHA", "a" * 40, 3, "{q}:body", b"{q}:hot", "\u00e9t\u00e9 \U0001f600", "", 0, -7),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "x"),
    ("HSET", "k", "f", 5.0, 0.1, 1e20, 1 / 3, -0.0, 2**70),
]


@pytest.mark.parametrize("args", ARGS)
def test_packs_the_same_bytes_as_redis_py(args: tuple[object, ...]) -> None:
    lean, plain = LeanConnection(), Connection()
    assert b"".join(lean.pack_command(*args)) == b"".join(plain.pack_command(*args))


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(rex.DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(rex.DataError):
        LeanConnection().pack_command("SET", "k", bad)


def test_each_url_gets_the_lean_twin_of_its_class() -> None:
    assert lean_class("redis://localhost:6379/0") is LeanConnection
    assert lean_class("rediss://localhost:6380") is LeanSSLConnection
    assert lean_class("unix:///tmp/redis.sock") is LeanUnixConnection
    assert issubclass(LeanSSLConnection, SSLConnection)
    assert issubclass(LeanUnixConnection, UnixDomainSocketConnection)


async def test_a_write_that_cannot_finish_times_out_and_drops_the_connection(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    conn = LeanConnection(host="127.0.0.1", port=server.port, socket_timeout=0.3)
    await conn.connect()
    server.pause()  # it reads nothing more: the socket buffers fill and the write blocks
    try:
        with pytest.raises(rex.TimeoutError, match="writing"):
            await conn.send_packed_command(b"x" * (64 << 20), check_health=False)
        assert not conn.is_connected
        assert conn.socket_timeout == 0.3  # restored for the reads that follow
    finally:
        server.resume()
        await conn.disconnect()


async def test_commands_round_trip_through_a_real_server(
    make_server: Callable[..., RedisServer],
) -> None:
    url = make_server().url()
    pool = BlockingConnectionPool.from_url(url, connection_class=lean_class(url), socket_timeout=5)
    client = Redis(connection_pool=pool)
    try:
        await client.hset("lean:h", mapping={"f\u00e9": "v" * 100_000})
        assert await client.hget("lean:h", "f\u00e9") == b"v" * 100_000
        sha = await client.script_load("return ARGV[1]")
        assert await client.evalsha(sha, 0, 1.5) == b"1.5"
    finally:
        await client.aclose()
