"""Redis Cluster: the client, single-node clients, topology refreshes, per-node checks.

genqueue talks to a cluster through redis-py's ``redis.asyncio.cluster.RedisCluster``,
which routes each command to the primary that holds its keys' slot and follows MOVED
and ASK redirections itself (TRYAGAIN too, briefly). Everything genqueue sends is
single-slot by construction: each Lua script gets the keys of one queue (one hash tag,
see ``keys``) or one key; every other command names one key; the one MULTI (analytics
tallies) uses one hash tag; non-transactional pipelines of single-key commands are split
per node by the client. Nothing scans the keyspace: the queue registry is one key.

Outages are retried by ``Connection.call`` (the client's own retries are off, as on one
server). A failed call also refreshes the client's map of slots to nodes
(``Topology.refresh``), so after a failover the next attempt goes to the promoted
replica even when the failure came from a pipeline, which redis-py does not refresh on.

Pub/sub wake-ups and the start-up checks need a connection to one particular node:
``node_client`` opens a plain client to it, with the URL's credentials and options.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from genqueue.backends.redis.checks import ServerReport, inspect_server
from genqueue.backends.redis.options import RedisOptions

log = logging.getLogger("genqueue.redis")
#: A failing cluster is asked for its layout at most this often (seconds).
REFRESH_EVERY = 0.25


def make_cluster_client(options: RedisOptions) -> RedisCluster:
    seeds = [ClusterNode(host, port) for host, port in options.nodes[1:]]
    return RedisCluster.from_url(
        options.url,  # the first seed node, with credentials and redis-py's options
        startup_nodes=seeds or None,
        max_connections=options.max_connections,
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.connect_timeout,
        health_check_interval=options.health_check_interval,
        # Retries are ours (see Connection.call), as with one server.
        retry=Retry(NoBackoff(), 0),
        # A MOVED reply patches its slot only. By default redis-py rebuilds the layout on
        # every 5th one by closing every connection of every node, which fails the calls
        # in flight on them (a fetch whose reply is lost leaves its jobs to expired
        # leases): while a slot moved, that happened many times a second. Failovers are
        # handled by Connection._refresh_topology.
        reinitialize_steps=0,
    )


def node_client(options: RedisOptions, host: str, port: int) -> Redis:
    """A plain client to one node of the cluster (pub/sub, INFO)."""
    return Redis.from_url(
        options.node_url(host, port),
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.connect_timeout,
        health_check_interval=options.health_check_interval,
        retry=Retry(NoBackoff(), 0),
    )


def owner(client: RedisCluster, key: str) -> tuple[str, int]:
    """(host, port) of the primary that holds ``key``'s slot, as the client knows it."""
    node = client.get_node_from_key(key)
    if node is None:  # pragma: no cover - only asked for replicas
        raise LookupError(key)
    return node.host, int(node.port)


async def inspect_nodes(client: RedisCluster, options: RedisOptions) -> dict[str, ServerReport]:
    """Every node's report (primaries and replicas), by node name (host:port)."""
    await client.initialize()
    reports = {}
    for node in sorted(client.get_nodes(), key=lambda n: n.name):
        single = node_client(options, node.host, int(node.port))
        try:
            reports[node.name] = await inspect_server(single)
        finally:
            await single.aclose()
    return reports


class Topology:
    """Refreshes the client's slot map after failures, at most every REFRESH_EVERY s."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self._last = -REFRESH_EVERY
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if loop.time() - self._last < REFRESH_EVERY:
                return
            self._last = loop.time()
            try:
                await self.client.nodes_manager.initialize()
            except Exception as exc:  # no seed answers yet: the next attempt asks again
                log.debug("Redis Cluster layout not refreshed (%s)", exc)
            with contextlib.suppress(Exception):
                await self.client.initialize()  # a client closed by redis-py re-opens
