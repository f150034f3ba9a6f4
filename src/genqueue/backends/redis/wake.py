"""Waking idle workers the moment jobs become ready (Redis pub/sub).

Scripts that make jobs ready publish on a channel named like the queue's ready key
(``lib/prelude.lua``). An idle worker waits here instead of sleeping a whole poll interval.
The subscription runs on its own connection; if it breaks, waiting degrades to the poll
timeout and the subscription is re-established in the background, so a lost message only
ever costs latency, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

log = logging.getLogger("genqueue.redis")


class WakeUps:
    def __init__(self, client: Callable[[], Redis], channel: Callable[[str], str]) -> None:
        self._client = client
        self._channel = channel
        self._wanted: set[str] = set()
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        channels = {self._channel(q) for q in queues}
        if not channels <= self._wanted:
            self._wanted |= channels
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(*channels)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="genqueue-redis-wakeups")
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                self._pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(*self._wanted)
                delay = 0.1
                async for message in self._pubsub.listen():
                    if message and message.get("type") == "message":
                        self._ready.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("Redis wake-up subscription lost (%s); polling until it is back", exc)
                await self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await self._drop()
