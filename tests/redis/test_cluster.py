"""Redis Cluster specifics: URLs, per-node start-up checks, sharded wake-ups on every
node, NOSCRIPT on one node, WAIT without replicas, and the one-slot guard itself.

The conformance suite and the model test run whole on the session's 3-master cluster
(tests/conformance, tests/model); failover is tests/redis/test_cluster_failover.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.crc import key_slot

import redis
from genqueue import App, BackendError, ConfigError, Worker, WorkerSettings
from genqueue.backends import create_backend
from genqueue.backends.redis import RedisBackend, RedisOptions, scripts
from genqueue.backends.redis.keys import KeySchema
from genqueue.backends.redis.options import safe_url
from genqueue.cli.urls import safe_url as cli_safe_url
from genqueue.clock import OffsetClock
from tests.redis_cluster import LocalCluster, session_cluster
from tests.redis_server import free_port, session_server
from tests.redis_server import test_prefix as prefix_for_test
from tests.slot_guard import SlotGuard

pytestmark = pytest.mark.redis


# -- URLs (no server) -------------------------------------------------------------------------


def test_cluster_url_names_seed_nodes() -> None:
    options = RedisOptions.from_url("redis+cluster://a:7000,b:7001/?prefix=x&retry_for=3")
    assert options.cluster and options.nodes == (("a", 7000), ("b", 7001))
    assert options.prefix == "x" and options.retry_for == 3
    assert options.url == "redis://a:7000/0"  # what redis-py gets: the first seed
    assert RedisOptions.from_url("redis+cluster://a,b:7001").nodes == (("a", 6379), ("b", 7001))
    v6 = RedisOptions.from_url("redis+cluster://[::1]:7000/0")
    assert v6.nodes == (("::1", 7000),) and v6.node_url("::1", 7002) == "redis://[::1]:7002/0"
    assert not RedisOptions.from_url("redis://a:7000/0").cluster


def test_cluster_url_keeps_credentials_and_tls_options_for_every_node() -> None:
    url = "rediss+cluster://u:s3cret@a:7000,b:7001/?ssl_ca_certs=/ca.pem&prefix=p"
    options = RedisOptions.from_url(url)
    assert options.url == "rediss://u:s3cret@a:7000/0?ssl_ca_certs=%2Fca.pem"
    assert options.node_url("b", 7001) == "rediss://u:s3cret@b:7001/0?ssl_ca_certs=%2Fca.pem"
    for masked in (safe_url(url), cli_safe_url(url)):
        assert "s3cret" not in masked and "u:***@a:7000,b:7001" in masked
    backend = create_backend(url)
    assert isinstance(backend, RedisBackend) and backend.options.cluster
    assert "s3cret" not in repr(backend)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://a:7000/1", "only database 0"),
        ("redis+cluster://a:port/", "invalid node"),
        ("redis+cluster:///", "no node"),
        ("redis+cluster://a:7000/?bogus=1", "unknown option 'bogus'"),
        ("redis+cluster://a:7000/?wait_replicas=-1", "must not be negative"),
    ],
)
def test_bad_cluster_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisOptions.from_url(url)


async def test_an_unreachable_cluster_is_an_outage_then_a_clear_error() -> None:
    seeds = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    backend = RedisBackend.from_url(f"redis+cluster://{seeds}/?retry_for=0.3&connect_timeout=0.5")
    with pytest.raises(BackendError, match=f"Redis Cluster at {seeds} is unavailable"):
        await backend.open()
    await backend.close()


# -- one slot per script call -----------------------------------------------------------------


def test_the_slot_guard_flags_a_call_across_slots() -> None:
    keys = KeySchema("p")
    guard = SlotGuard()
    guard.check("fetch", keys.queue("a").names)
    guard.assert_clean()
    mixed = [keys.queue("a")["ready"], keys.queue("b")["ready"]]
    assert len({key_slot(k.encode()) for k in mixed}) == 2
    guard.check("fetch", mixed)
    with pytest.raises(AssertionError, match="span several Redis Cluster slots"):
        guard.assert_clean()


# -- the session cluster ----------------------------------------------------------------------


def _node_for(cluster: LocalCluster, key: str) -> int:
    return cluster.master_of_slot(key_slot(key.encode())).port


def _queues_on_every_master(cluster: LocalCluster, prefix: str) -> dict[int, str]:
    """A queue name on each master (port -> queue)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < cluster.masters:
        queue = f"q{n}"
        found.setdefault(_node_for(cluster, KeySchema(prefix).queue(queue)["ready"]), queue)
        n += 1
    return found


async def test_start_up_checks_run_on_every_node(caplog: pytest.LogCaptureFixture) -> None:
    cluster = session_cluster()
    with caplog.at_level(logging.INFO, "genqueue.redis"):
        async with App(cluster.url(prefix_for_test())):
            pass
    assert "connected to Redis Cluster 7." in caplog.text
    ports = [str(node.port) for node in cluster.nodes]
    line = next(r.message for r in caplog.records if "persistence off" in r.message)
    assert all(port in line for port in ports)
    # One node that evicts keys is enough to refuse the cluster, naming it.
    node = cluster.nodes[1]
    with redis.Redis(port=node.port) as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
        try:
            backend = RedisBackend.from_url(cluster.url(prefix_for_test()))
            with pytest.raises(ConfigError, match=rf"cluster node 127.0.0.1:{node.port}.*allkeys"):
                await backend.open()
            await backend.close()
        finally:
            client.config_set("maxmemory-policy", "noeviction")


async def test_idle_workers_are_woken_on_every_node() -> None:
    """A worker that would poll once an hour runs jobs enqueued on each master at once:
    it holds one sharded subscription per node."""
    cluster = session_cluster()
    prefix = prefix_for_test()
    queues = _queues_on_every_master(cluster, prefix)
    app = App(cluster.url(prefix))
    done: list[str] = []

    @app.task("t")
    async def t(ctx: Any) -> None:
        done.append(ctx.job.queue)

    settings = WorkerSettings(poll_interval=3600, sweep_interval=3600)
    async with app:
        worker = Worker(app, queues=list(queues.values()), settings=settings)
        runner = asyncio.create_task(worker.run())
        for port, queue in queues.items():
            channel = KeySchema(prefix).queue(queue)["ready"]
            await _until(lambda p=port, c=channel: _shard_subscribers(p, c) == 1, "SSUBSCRIBE")
            await app.enqueue("t", {}, queue=queue)
            await _until(lambda q=queue: q in done, f"the job on {queue} to run")
        worker.request_stop()
        await asyncio.wait_for(runner, 10)
    assert sorted(done) == sorted(queues.values())


def _shard_subscribers(port: int, channel: str) -> int:
    with redis.Redis(port=port) as client:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_node_that_forgot_the_scripts_gets_them_again() -> None:
    cluster = session_cluster()
    prefix = prefix_for_test()
    queues = _queues_on_every_master(cluster, prefix)
    app = App(cluster.url(prefix))
    app.task("t")(_noop)
    port, queue = next(iter(queues.items()))
    sha = scripts.CLUSTER_SCRIPTS["enqueue"].sha
    async with app:
        with redis.Redis(port=port) as client:
            client.script_flush()  # like a restarted node, or a replica just promoted
            assert client.script_exists(sha) == [False]
            job = await app.enqueue("t", {}, queue=queue)
            assert client.script_exists(sha) == [True]
        assert (await app.get(job.id)) is not None


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_wait_without_replicas_keeps_the_write_and_says_so(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The session's server and cluster have no replicas: WAIT 1 is never satisfied."""
    where = session_cluster() if kind == "redis-cluster" else session_server()
    app = App(where.url(prefix_for_test(), wait_replicas="1", wait_timeout="0.05"))
    app.task("t")(_noop)
    with caplog.at_level(logging.WARNING, "genqueue.redis"):
        async with app:
            job = await app.enqueue("t", {})
            assert (await app.get(job.id)) is not None
            assert app.backend.conn.unconfirmed >= 1  # type: ignore[attr-defined]
    assert "not confirmed by 1 replica(s) within 0.050 s (enqueue" in caplog.text


async def _noop(ctx: Any) -> None:
    return None


@pytest.mark.parametrize("skew", [300.0, -300.0])
async def test_backend_time_is_the_clusters(skew: float) -> None:
    """A skewed machine clock does not matter: the backend's time is the nodes' TIME."""
    cluster = session_cluster()
    app = App(cluster.url(prefix_for_test()), clock=OffsetClock(skew))
    app.task("t")(_noop)
    async with app:
        assert app.backend.capabilities.server_time
        await app.enqueue("t", {})  # a script's reply also sets the estimate
        for node in cluster.nodes:
            with redis.Redis(port=node.port) as client:
                seconds, micros = client.time()
            assert abs(await app.backend.time() - (seconds + micros / 1e6)) < 0.5
