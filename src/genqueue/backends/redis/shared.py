"""Shared state and concurrency slots on Redis (provider cooldowns, breakers, limits).

Each record or slot set is one key outside any queue, touched by one script at a time,
so it works on Cluster too. Expiry follows the clock the scripts use (server ``TIME``).
"""

from __future__ import annotations

from typing import Any

import orjson

from genqueue.backends.redis import scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema


class SharedStateMixin:
    keys: KeySchema

    @property
    def conn(self) -> Connection:
        raise NotImplementedError

    def _clock(self) -> str:
        raise NotImplementedError

    async def state_get(self, key: str) -> tuple[Any, int] | None:
        reply = await scripts.state_get(self.conn.evaluate, self.keys.state(key), self._clock())
        return None if reply.value is None else (orjson.loads(reply.value), reply.version)

    async def state_put(
        self, key: str, value: Any, *, expect_version: int, ttl: float | None = None
    ) -> int | None:
        reply = await scripts.state_put(
            self.conn.evaluate,
            self.keys.state(key),
            self._clock(),
            value=orjson.dumps(value),
            expect_version=expect_version,
            ttl=ttl,
        )
        return reply.n or None

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        reply = await scripts.slot_acquire(
            self.conn.evaluate,
            self.keys.slots(key),
            self._clock(),
            holder=holder,
            limit=limit,
            ttl=ttl,
        )
        return reply.flags[0]

    async def slot_release(self, key: str, holder: str) -> None:
        await scripts.slot_release(self.conn.evaluate, self.keys.slots(key), self._clock(), holder)

    async def slot_count(self, key: str) -> int:
        reply = await scripts.slot_count(self.conn.evaluate, self.keys.slots(key), self._clock())
        return reply.n
