"""A leaner command path for redis-py's asyncio connections.

redis-py's asyncio connection packs every command in pure Python, about a microsecond
per argument: a script call carries a queue's 28 keys, so packing cost more than Redis
spent running the script. And it bounds each write with ``asyncio.wait_for``, a new Task
per command. These subclasses pack with hiredis's C packer (what redis-py's synchronous
client does when hiredis is installed) and bound the write with a timeout scope, a timer
instead of a Task. Parsing, health checks, reconnects and errors stay redis-py's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)

from redis import exceptions as rex

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the redis extra installs hiredis; without it redis-py packs
    _hiredis_pack = None


class _Lean(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is None:
            return super().pack_command(*args)
        # As redis-py does: a command name with a space ("SCRIPT LOAD") is two arguments.
        head = args[0]
        if isinstance(head, str):
            head = head.encode()
        if b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [_hiredis_pack(args)]
        except TypeError:
            return super().pack_command(*args)  # raises redis-py's own DataError

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await super().send_packed_command(command, check_health)
        # redis-py would wrap the write in wait_for while socket_timeout is set; the scope
        # below bounds it (and the health check's PING) instead. On a timeout redis-py's
        # handler of the cancellation has already dropped the connection.
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            raise rex.TimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class LeanConnection(_Lean, Connection):
    pass


class LeanSSLConnection(_Lean, SSLConnection):
    pass


class LeanUnixConnection(_Lean, UnixDomainSocketConnection):
    pass


_LEAN: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: LeanConnection,
    SSLConnection: LeanSSLConnection,
    UnixDomainSocketConnection: LeanUnixConnection,
}


def lean_class(url: str) -> type[AbstractConnection]:
    """The lean twin of the connection class redis-py would use for ``url``."""
    plain = parse_url(url).get("connection_class", Connection)
    return _LEAN.get(plain, plain)
