"""Talking to Redis: the client, retries across outages, the server clock, WAIT.

Every call has a socket timeout, so nothing hangs on a dead or frozen server. A call that
fails because Redis is unreachable, still loading its data, or failing over (a Cluster
that is down, a slot with no primary yet, TRYAGAIN) is retried with backoff for up to
``retry_for`` seconds (so workers ride out a restart or a failover and resume by
themselves), then fails with ``BackendError``. Scripts are loaded again when a server
answers NOSCRIPT (it forgets them on restart; a promoted replica may never have had
them): on one server with SCRIPT LOAD, on a cluster with EVAL, which runs the script on
the node that holds its keys and caches it there. Re-sending a script whose reply was
lost is safe: moves and heartbeats are fenced compare-and-sets, enqueue treats an
identical job id as already stored, and a fetch whose reply was lost only leaves leases
that expire.

Redis replicates asynchronously: a write a primary acknowledged can be missing on the
replica that replaces it. With ``wait_replicas=N`` every script that writes is followed,
on the same connection, by ``WAIT N wait_timeout``, so a write genqueue reports as done
has reached N replicas; when fewer confirm in time the write still stands on the
primary and genqueue logs that it is unconfirmed (see the README, Backends).

URL options live in ``options``, the start-up checks in ``checks``, the cluster client in
``cluster``.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from genqueue.backends.redis import scripts
from genqueue.backends.redis.checks import check_cluster, check_server, inspect_server
from genqueue.backends.redis.cluster import Topology, inspect_nodes, make_cluster_client
from genqueue.backends.redis.options import RedisOptions, safe_url
from genqueue.backends.redis.scripts import Script
from genqueue.backends.remote import Outages, ServerClock
from genqueue.errors import BackendError, IdempotencyConflict, InvalidInput
from redis import exceptions as rex

__all__ = ["Connection", "RedisOptions", "ServerClock", "make_client", "safe_url"]

log = logging.getLogger("genqueue.redis")
T = TypeVar("T")

#: Replies of a Redis that is failing over or still starting (redis-py maps each to a
#: class; LOADING is a ConnectionError), and a cluster whose layout is changing: worth
#: retrying. (MOVED/ASK/TRYAGAIN are followed by the cluster client; these are what
#: is left when that was not enough.)
_TRANSIENT = (
    rex.ReadOnlyError,
    rex.MasterDownError,
    rex.TryAgainError,
    rex.ClusterDownError,
    rex.ClusterError,
    rex.SlotNotCoveredError,
    rex.MovedError,
    rex.AskError,
)
#: Unconfirmed writes (wait_replicas) are logged at most this often (seconds).
UNCONFIRMED_LOG_EVERY = 60.0


#: Where redis-py writes to a socket: a connection closed under a write fails there.
_WRITE_PATHS = (
    os.path.join("redis", "asyncio", "connection.py"),
    os.path.join("redis", "connection.py"),  # the blocking client's (blocking.py)
    os.path.join("asyncio", "streams.py"),
    os.path.join("asyncio", "selector_events.py"),
)


def _lost_while_writing(exc: Exception) -> bool:
    """A connection closed while a command was being written to it, which redis-py
    reports as the transport's own AttributeError or TypeError instead of a
    ConnectionError (redis/redis-py#4287; seen on a cluster whose slots were moving):
    the connection is dropped, and the call is as retryable as after a ConnectionError."""
    tb = exc.__traceback__
    if not isinstance(exc, (AttributeError, TypeError)) or tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next  # the frame that raised it
    return tb.tb_frame.f_code.co_filename.endswith(_WRITE_PATHS)


def waiting_may_cure(exc: Exception) -> bool:
    """A failure that a later try may get past: a connection lost or refused, a timeout,
    a failover or a cluster layout change under way, a socket closed under a write."""
    transient = (rex.ConnectionError, rex.TimeoutError, OSError, *_TRANSIENT)
    return isinstance(exc, transient) or _lost_while_writing(exc)


#: A pipelined call not sent yet (see ``Connection.evaluate_many``).
_UNSENT: Any = object()


def _failed(result: Any) -> bool:
    return result is _UNSENT or isinstance(result, Exception)


async def _caught(call: Awaitable[T]) -> T | Exception:
    try:
        return await call
    except Exception as exc:  # the caller raises it, or hands it back in place
        return exc


def pool_options(options: RedisOptions) -> dict[str, Any]:
    """The options of a connection pool to one server (asyncio's here, blocking's in
    ``blocking``); the URL carries the rest (TLS, password, database)."""
    return {
        "max_connections": options.max_connections,
        "timeout": options.socket_timeout + options.connect_timeout,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.connect_timeout,
        "health_check_interval": options.health_check_interval,
    }


def make_client(options: RedisOptions) -> Redis:
    # Retries are ours (see Connection.call): redis-py would re-send scripts blindly.
    pool = BlockingConnectionPool.from_url(
        options.url, **pool_options(options), retry=Retry(NoBackoff(), 0)
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


def _refuse_untrusted(url: str, exc: BaseException) -> None:
    """Raise at once if the connection failed because the server's TLS certificate was not
    trusted (a wrong ``ssl_ca_certs``, a host name not in the certificate)."""
    seen: BaseException | None = exc
    untrusted = "CERTIFICATE_VERIFY_FAILED" in str(exc)
    while seen is not None and not untrusted:
        untrusted = isinstance(seen, ssl.SSLCertVerificationError)
        seen = seen.__cause__ or seen.__context__
    if untrusted:
        raise BackendError(
            f"Redis at {safe_url(url)}: the server's TLS certificate was refused ({exc}); "
            "check ssl_ca_certs (the CA that signed it) and that the URL's host is a name "
            "in the certificate"
        ) from exc


class Connection:
    """One client (one server or a cluster) with retries, NOSCRIPT handling, WAIT and
    clock tracking."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.redis: Redis | RedisCluster
        self.topology: Topology | None = None
        if options.cluster:
            cluster = make_cluster_client(options)
            self.redis, self.topology = cluster, Topology(cluster)
            self.scripts = scripts.CLUSTER_SCRIPTS
        else:
            self.redis = make_client(options)
            self.scripts = scripts.SCRIPTS
        self.clock = ServerClock()
        self._outages = Outages("Redis", options.where, options.retry_for, log)
        #: Writes whose WAIT (wait_replicas) was not confirmed in time.
        self.unconfirmed = 0
        self._unconfirmed_logged = -UNCONFIRMED_LOG_EVERY

    async def close(self) -> None:
        await self.redis.aclose()
        if isinstance(self.redis, Redis):
            await self.redis.connection_pool.disconnect()

    async def check(self) -> str:
        """Run the start-up checks (every node of a cluster); the Redis version."""
        redis = self.redis
        if isinstance(redis, RedisCluster):
            reports = await self.call("INFO", lambda: inspect_nodes(redis, self.options))
            check_cluster(reports, self.options)
            return min((r.version for r in reports.values()), key=_version_key)
        report = await self.call("INFO", lambda: inspect_server(redis))
        check_server(report, self.options)
        return report.version

    async def load_scripts(self) -> None:
        async def load() -> None:
            for script in self.scripts.values():
                await self.redis.script_load(script.text)  # every primary of a cluster

        await self.call("SCRIPT LOAD", load)

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn``, retrying transient failures for up to ``retry_for`` seconds."""
        return await self._outages.call(
            what, fn, lambda exc: self._transient(what, exc), self._refresh_topology
        )

    async def _refresh_topology(self) -> None:
        if self.topology is not None:
            await self.topology.refresh()  # a failover moves slots to another node

    def _transient(self, what: str, exc: Exception) -> Exception:
        """``exc`` if waiting may cure it; otherwise raise what the caller should see."""
        if isinstance(exc, rex.AuthenticationError):
            raise BackendError(f"{self.options.where}: {exc}") from exc
        if waiting_may_cure(exc):
            _refuse_untrusted(self.options.url, exc)  # waiting cannot fix a certificate
            return exc
        if isinstance(exc, rex.ResponseError):
            raise response_error(what, exc) from exc
        if isinstance(exc, rex.RedisClusterException):
            if isinstance(exc.__cause__, (rex.ConnectionError, rex.TimeoutError, OSError)):
                _refuse_untrusted(self.options.url, exc)  # no seed node trusted, as above
                return exc  # no seed node answered (yet): an outage like any other
            raise BackendError(f"Redis Cluster refused {what}: {exc}") from exc  # e.g. CROSSSLOT
        raise exc

    async def evaluate(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script (loading it if Redis forgot it); track the server clock."""
        script = self.scripts[script.name]  # on a cluster: the twin that SPUBLISHes
        wait = self.options.wait_replicas > 0 and script.name not in scripts.UNWAITED

        async def attempt() -> Any:
            nonlocal args
            sent = time.monotonic()
            try:
                if wait:
                    reply = await self._run_and_wait(script, keys, args)
                else:
                    reply = await self._run(script, keys, args)
            except Exception:
                args = scripts.resent(script, args)  # it may have run: a retry says so
                raise
            self.clock.observe(float(reply[0]), sent, time.monotonic())
            return reply

        return await self.call(script.name, attempt)

    async def evaluate_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Any]]], *, partial: bool = False
    ) -> list[Any]:
        """Several scripts (each on its own queue) in one pipeline: one round trip per node
        instead of one per script. Like ``evaluate`` each script is atomic on its own; the
        calls are not atomic together. With ``wait_replicas`` they run one by one (each
        with its WAIT).

        A call that succeeded is never sent again: when some fail (a slot moving, one node
        failing over), only those are retried, and ``partial`` returns at once instead,
        each failure (an exception) in its call's place, so that the caller keeps the
        replies it got: a fetch's claims would otherwise be orphaned until their leases
        expired. When every call failed, the first error is raised (after retries)."""
        named = [(self.scripts[script.name], keys, args) for script, keys, args in calls]
        results: list[Any] = [_UNSENT] * len(named)

        async def attempt() -> list[Any]:
            todo = [i for i, result in enumerate(results) if _failed(result)]
            if len(named) == 1 or self.options.wait_replicas > 0:
                for i in todo:
                    results[i] = await _caught(self.evaluate(*named[i]))
            else:
                try:
                    await self._pipeline(named, todo, results)
                finally:
                    for i in todo:  # sent (maybe run): a retry tells the script so
                        script, keys, args = named[i]
                        named[i] = (script, keys, scripts.resent(script, args))
            failed = [result for result in results if _failed(result)]
            if failed and not (partial and len(failed) < len(results)):
                raise failed[0]
            return list(results)

        return await self.call(calls[0][0].name, attempt)

    async def _pipeline(
        self,
        named: Sequence[tuple[Script, Sequence[str], Sequence[Any]]],
        todo: Sequence[int],
        results: list[Any],
    ) -> None:
        """Send the calls ``todo`` in one pipeline; each reply (or error) into ``results``."""
        sent = time.monotonic()
        pipe = self.redis.pipeline(transaction=False)
        for i in todo:
            script, keys, args = named[i]
            # execute_command: a cluster pipeline refuses its evalsha() method.
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies = list(await pipe.execute(raise_on_error=False))
        for i, raw in zip(todo, replies, strict=True):
            reply = raw
            if isinstance(raw, rex.NoScriptError):
                reply = await _caught(self._run(*named[i]))
            results[i] = reply
            if not isinstance(reply, Exception):
                self.clock.observe(float(reply[0]), sent, time.monotonic())

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            if isinstance(self.redis, RedisCluster):
                # Runs on (and caches the script in) the node that holds the keys.
                return await self.redis.eval(script.text, len(keys), *keys, *args)
            await self.redis.script_load(script.text)
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)

    async def _run_and_wait(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script, then WAIT on the same connection (one pipeline to one node)."""
        wait = ("WAIT", self.options.wait_replicas, int(self.options.wait_timeout * 1000))
        for load in (False, True):
            pipe = self.redis.pipeline(transaction=False)
            # execute_command: a cluster pipeline refuses its evalsha()/eval() methods.
            run = ("EVAL", script.text) if load else ("EVALSHA", script.sha)
            pipe.execute_command(*run, len(keys), *keys, *args)
            node = None
            if isinstance(self.redis, RedisCluster):
                node = self.redis.get_node_from_key(keys[0])
                pipe.execute_command(*wait, target_nodes=node)
            else:
                pipe.execute_command(*wait)
            reply, acked = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, rex.NoScriptError):
                break
        if isinstance(reply, Exception):
            raise reply
        moved = node is not None and self._owner_changed(node, keys[0])
        if isinstance(acked, Exception) or int(acked) < self.options.wait_replicas or moved:
            self._note_unconfirmed(acked, script.name)
        return reply

    def _owner_changed(self, node: Any, key: str) -> bool:
        """Whether the key's slot moved during the call (then WAIT ran on the old node)."""
        assert isinstance(self.redis, RedisCluster)
        try:
            return bool(self.redis.get_node_from_key(key) is not node)
        except rex.RedisClusterException:
            return True

    def _note_unconfirmed(self, acked: Any, what: str) -> None:
        self.unconfirmed += 1
        now = time.monotonic()
        if now - self._unconfirmed_logged >= UNCONFIRMED_LOG_EVERY:
            self._unconfirmed_logged = now
            log.warning(
                "Redis write not confirmed by %d replica(s) within %.3f s (%s: %s); it "
                "stands on the primary but may be lost if the primary fails now "
                "(%d unconfirmed so far)",
                self.options.wait_replicas,
                self.options.wait_timeout,
                what,
                acked,
                self.unconfirmed,
            )

    async def server_time(self) -> float:
        """Ask Redis for its time (used when no script ran for a while). On a cluster
        TIME goes to the client's default node (a primary)."""

        async def ask() -> float:
            sent = time.monotonic()
            seconds, micros = await self.redis.time()
            now = seconds + micros / 1e6
            self.clock.observe(now, sent, time.monotonic())
            return float(now)

        return await self.call("TIME", ask)


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def response_error(what: str, exc: rex.ResponseError) -> Exception:
    text = str(exc)
    if "GENQUEUE_IDEMPOTENCY_CONFLICT" in text:
        holder, key = text.split("GENQUEUE_IDEMPOTENCY_CONFLICT", 1)[1].split()[:2]
        return IdempotencyConflict(bytes.fromhex(key).decode(errors="replace"), holder)
    if "GENQUEUE_DUPLICATE" in text:
        job_id = text.split("GENQUEUE_DUPLICATE", 1)[1].strip().split()[0]
        return InvalidInput(f"a job with id {job_id} already exists", field="id")
    if isinstance(exc, rex.OutOfMemoryError):
        return BackendError(
            "Redis is out of memory (maxmemory reached) and refused the write; nothing was "
            "stored. Free memory (purge old jobs or dead letters) or raise maxmemory."
        )
    return BackendError(f"Redis rejected {what}: {text}")
