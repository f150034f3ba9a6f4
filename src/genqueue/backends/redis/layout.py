"""The version of the key layout a Redis holds (``<prefix>:layout``), so that no process
works on data laid out by a newer genqueue: it would misread it, and write what the newer
one misreads.

The first process to open a Redis that has none writes this release's version. A release
that changes the layout (see bench/README.md, "Redis is at 1.9 KB") raises it once its
migration is done, after the processes of older releases have stopped; any of those that
starts again afterwards refuses to, with a message that says to upgrade. PostgreSQL and
SQLite check their migration versions the same way.
"""

from __future__ import annotations

from genqueue.backends.redis.connection import Connection
from genqueue.errors import ConfigError

#: The key layout this release reads and writes (keys.py describes it).
LAYOUT = 1


async def check_layout(conn: Connection, key: str, prefix: str) -> int:
    """The layout version of this Redis, written first if it has none; raises
    ``ConfigError`` if a newer genqueue laid it out."""

    async def read() -> bytes | str | None:
        # One round trip (SET's GET option needs Redis 7.0 with NX; 6.2 is supported).
        pipe = conn.redis.pipeline(transaction=False)
        pipe.set(key, LAYOUT, nx=True)
        pipe.get(key)
        value: bytes | str | None = (await pipe.execute())[1]
        return value

    stored = await conn.call("SET", read)
    text = stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)
    version = int(text) if text.isdigit() else 0
    if not 1 <= version <= LAYOUT:
        raise ConfigError(
            f"{conn.options.where}: key prefix {prefix!r} holds genqueue data in key layout "
            f"{text!r}, which this genqueue (layout {LAYOUT}) does not know: a newer "
            "genqueue wrote it; upgrade genqueue"
        )
    return version
