"""Waking idle workers the moment jobs become ready (Redis pub/sub).

Scripts that make jobs ready publish on a channel named like the queue's ready key
(``lib/prelude.lua``). An idle worker waits here instead of sleeping a whole poll interval.
The subscription runs on its own connection; if it breaks, waiting degrades to the poll
timeout and the subscription is re-established in the background, so a lost message only
ever costs latency, never a job.

On one server (``WakeUps``) scripts PUBLISH and workers SUBSCRIBE. On Redis Cluster
(``ShardedWakeUps``) scripts SPUBLISH (sharded pub/sub, Redis 7.0+): the channel shares
the queue's hash tag, so the message stays on the shard (primary and replicas) that holds
the queue, instead of being broadcast over the cluster bus to every node as PUBLISH is.
A worker therefore subscribes (SSUBSCRIBE) on each node that holds one of its queues, one
connection per node. When a node fails, or a queue's slot moves (the node then sends
``sunsubscribe``), the client's slot map is refreshed and every subscription is made again
on the nodes it names by then; until that works, waiting is polling. A subscription may
end up on a replica of the queue's shard (a node that was the queue's primary and came
back as a replica); sharded messages reach the shard's replicas too, so it still wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from genqueue.backends.redis.cluster import node_client, owner
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.options import RedisOptions

log = logging.getLogger("genqueue.redis")
#: A node subscription reads for this long at a time (below any socket timeout).
READ_SLICE = 1.0


class Waiter(Protocol):
    async def wait(self, queues: Sequence[str], timeout: float) -> None: ...

    async def close(self) -> None: ...


def wake_ups(
    options: RedisOptions, conn: Callable[[], Connection], channel: Callable[[str], str]
) -> Waiter:
    """The wake-ups for a backend: ``WakeUps`` on one server, ``ShardedWakeUps`` on a
    cluster (``conn`` gives the backend's open connection; ``channel`` a queue's)."""

    def server() -> Redis:
        client = conn().redis
        assert isinstance(client, Redis)
        return client

    def owner_of(key: str) -> tuple[str, int]:
        client = conn().redis
        assert isinstance(client, RedisCluster)
        return owner(client, key)

    async def refresh() -> None:
        topology = conn().topology
        if topology is not None:
            await topology.refresh()

    if not options.cluster:
        return WakeUps(server, channel)
    return ShardedWakeUps(
        owner_of, lambda host, port: node_client(options, host, port), channel, refresh
    )


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


class ShardedWakeUps:
    """Redis Cluster: SSUBSCRIBE to each queue's channel on the node that holds it."""

    def __init__(
        self,
        owner: Callable[[str], tuple[str, int]],
        connect: Callable[[str, int], Redis],
        channel: Callable[[str], str],
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self._owner = owner
        self._connect = connect
        self._channel = channel
        self._refresh = refresh
        self._wanted: set[str] = set()
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        channels = {self._channel(q) for q in queues}
        if not channels <= self._wanted:
            self._wanted |= channels
            self._changed.set()  # subscribe again, new channels included
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
                await self._subscribe_all()
                delay = 0.1  # the wanted channels changed: subscribe again at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("Redis wake-up subscription lost (%s); polling until it is back", exc)
                # A failed node may have handed its slots over: ask the cluster again
                # (an idle worker sends nothing else that would find out).
                with contextlib.suppress(Exception):
                    await self._refresh()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _subscribe_all(self) -> None:
        """Listen on every node until the wanted channels change (returns) or a node's
        subscription ends (raises)."""
        self._changed.clear()
        by_node: dict[tuple[str, int], list[str]] = defaultdict(list)
        for channel in sorted(self._wanted):
            by_node[self._owner(channel)].append(channel)
        tasks = [asyncio.create_task(self._listen(node, chs)) for node, chs in by_node.items()]
        changed = asyncio.create_task(self._changed.wait())
        try:
            done, _ = await asyncio.wait([*tasks, changed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, changed):
                task.cancel()
            await asyncio.gather(*tasks, changed, return_exceptions=True)
        if changed in done:
            return
        ended = next(iter(done))
        raise ended.exception() or RuntimeError("a shard's channels moved to another node")

    async def _listen(self, node: tuple[str, int], channels: Sequence[str]) -> None:
        client = self._connect(*node)
        pubsub = client.pubsub()
        me = asyncio.current_task()
        try:
            for channel in channels:  # one command each: channels of several slots
                await pubsub.ssubscribe(channel)
            while True:
                message = await pubsub.get_message(timeout=READ_SLICE)
                if me is not None and me.cancelling():
                    # redis-py's timed read can swallow a cancellation; honour it here.
                    raise asyncio.CancelledError
                kind = _text(message["type"]) if message else ""
                if kind == "smessage":
                    self._ready.set()
                elif kind == "sunsubscribe":
                    return  # the node no longer holds this slot (failover, resharding)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
