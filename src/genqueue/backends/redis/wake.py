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

A message carries the earliest due time the script added (ready or delayed jobs). Each is
handed to ``heard(queue, due)``, which says whether it is worth waking for (work due now,
not a retry due in a minute) and lets the backend note which queues have work (see
``fanin``). ``live`` says whether every wanted channel is subscribed right now, and
``generation`` grows each time a subscription is confirmed: messages sent before that
were missed, so the backend sweeps its queues then.
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
from genqueue.backends.remote import keep_subscribed

log = logging.getLogger("genqueue.redis")
#: A node subscription reads for this long at a time (below any socket timeout).
READ_SLICE = 1.0


#: ``heard(queue, due)``: note a message; True if it should wake idle workers.
Heard = Callable[[str, float], bool]


class Waiter(Protocol):
    live: bool
    generation: int

    async def watch(self, queues: Sequence[str]) -> None: ...

    async def wait(self, queues: Sequence[str], timeout: float) -> None: ...

    async def close(self) -> None: ...


def wake_ups(
    options: RedisOptions,
    conn: Callable[[], Connection],
    channel: Callable[[str], str],
    heard: Heard = lambda queue, due: True,
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
        return WakeUps(server, channel, heard)
    return ShardedWakeUps(
        owner_of, lambda host, port: node_client(options, host, port), channel, refresh, heard
    )


class _Hearing:
    """What both kinds share: the wanted channels, the wake event, the message hook."""

    def __init__(self, channel: Callable[[str], str], heard: Heard) -> None:
        self._channel = channel
        self._heard = heard
        self._queues: dict[str, str] = {}  # channel -> queue
        self._wanted: set[str] = set()
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        #: Every wanted channel is subscribed (as far as we know) right now.
        self.live = False
        #: Grows with each confirmed subscription (messages sent before it were missed).
        self.generation = 0

    def _new_channels(self, queues: Sequence[str]) -> set[str]:
        channels = set()
        for queue in queues:
            name = self._channel(queue)
            if name not in self._wanted:
                self._queues[name] = queue
                channels.add(name)
        self._wanted |= channels
        return channels

    def _message(self, channel: bytes | str, data: bytes | str) -> None:
        queue = self._queues.get(_text(channel))
        try:
            due = float(data)
        except ValueError:  # not a due time: work, due now
            due = float("-inf")
        if queue is None or self._heard(queue, due):
            self._ready.set()

    def _confirmed(self) -> None:
        self.live = True
        self.generation += 1

    async def _wait_ready(self, timeout: float) -> None:
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()


class WakeUps(_Hearing):
    def __init__(
        self,
        client: Callable[[], Redis],
        channel: Callable[[str], str],
        heard: Heard = lambda queue, due: True,
    ) -> None:
        super().__init__(channel, heard)
        self._client = client
        self._pubsub: PubSub | None = None

    async def watch(self, queues: Sequence[str]) -> None:
        """Subscribe to the queues' channels (from now on, in the background)."""
        channels = self._new_channels(queues)
        if channels and self._pubsub is not None:
            self.live = False  # until the server confirms the new channels
            with contextlib.suppress(Exception):
                await self._pubsub.subscribe(*channels)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="genqueue-redis-wakeups")

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        await self.watch(queues)
        await self._wait_ready(timeout)

    async def _read(self) -> None:
        async def session(connected: Callable[[], None]) -> None:
            self._pubsub = pubsub = self._client().pubsub()
            await pubsub.subscribe(*self._wanted)
            connected()
            await self._listen(pubsub)

        async def lost(exc: Exception) -> None:
            log.debug("Redis wake-up subscription lost (%s); polling until it is back", exc)
            await self._drop()

        await keep_subscribed(session, lost)

    async def _listen(self, pubsub: PubSub) -> None:
        me = asyncio.current_task()
        while True:
            message = await pubsub.get_message(timeout=READ_SLICE)
            if me is not None and me.cancelling():
                # redis-py's timed read can swallow a cancellation; honour it here.
                raise asyncio.CancelledError
            kind = _text(message["type"]) if message else ""
            if kind == "message":
                self._message(message["channel"], message["data"])
            elif kind == "subscribe" and int(message["data"]) >= len(self._wanted):
                self._confirmed()  # the server holds every wanted channel now

    async def _drop(self) -> None:
        self.live = False
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await self._drop()


class ShardedWakeUps(_Hearing):
    """Redis Cluster: SSUBSCRIBE to each queue's channel on the node that holds it."""

    def __init__(
        self,
        owner: Callable[[str], tuple[str, int]],
        connect: Callable[[str, int], Redis],
        channel: Callable[[str], str],
        refresh: Callable[[], Awaitable[None]],
        heard: Heard = lambda queue, due: True,
    ) -> None:
        super().__init__(channel, heard)
        self._owner = owner
        self._connect = connect
        self._refresh = refresh
        self._changed = asyncio.Event()
        self._pending = 0  # channels of this round not yet confirmed

    async def watch(self, queues: Sequence[str]) -> None:
        """Subscribe to the queues' channels (from now on, in the background)."""
        if self._new_channels(queues):
            self.live = False
            self._changed.set()  # subscribe again, new channels included
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="genqueue-redis-wakeups")

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        await self.watch(queues)
        await self._wait_ready(timeout)

    async def _read(self) -> None:
        async def session(connected: Callable[[], None]) -> None:
            await self._subscribe_all()  # returns when the wanted channels change

        async def lost(exc: Exception) -> None:
            self.live = False
            log.debug("Redis wake-up subscription lost (%s); polling until it is back", exc)
            # A failed node may have handed its slots over: ask the cluster again (an idle
            # worker sends nothing else that would find out).
            with contextlib.suppress(Exception):
                await self._refresh()

        await keep_subscribed(session, lost)

    async def _subscribe_all(self) -> None:
        """Listen on every node until the wanted channels change (returns) or a node's
        subscription ends (raises)."""
        self._changed.clear()
        self.live = False
        self._pending = len(self._wanted)
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
                    self._message(message["channel"], message["data"])
                elif kind == "ssubscribe":
                    self._pending -= 1
                    if self._pending == 0:
                        self._confirmed()  # every node holds its channels now
                elif kind == "sunsubscribe":
                    return  # the node no longer holds this slot (failover, resharding)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            with contextlib.suppress(Exception):
                await client.aclose()

    async def close(self) -> None:
        self.live = False
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
