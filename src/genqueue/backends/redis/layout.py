"""The version of the key layout a Redis holds (``<prefix>:layout``), so that no process
works on data laid out by a newer genqueue: it would misread it, and write what the newer
one misreads.

The first process to open a Redis that has none writes this release's version. Layout 2
keeps a dead job whole in its dead letter entry (see lua/lib/prelude.lua); it reads
everything layout 1 stored as it is, so a process of this release raises a layout 1
Redis to 2 when it opens it. Processes of the older release must be stopped first: one
still running would not find the dead jobs stored whole, and one that starts afterwards
refuses to, with a message that says to upgrade. PostgreSQL and SQLite check their
migration versions the same way.
"""

from __future__ import annotations

from genqueue.backends.redis.connection import Connection
from genqueue.errors import ConfigError

#: The key layout this release reads and writes (keys.py describes it).
LAYOUT = 2


async def check_layout(conn: Connection, key: str, prefix: str) -> int:
    """The layout version of this Redis as this process leaves it: written first if it
    has none, raised to this release's if older; raises ``ConfigError`` if a newer
    genqueue laid it out."""

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
    if version < LAYOUT:

        async def raise_it() -> None:
            await conn.redis.set(key, LAYOUT)

        await conn.call("SET", raise_it)
    return LAYOUT
