"""Talking to Redis: URL options, the client, retries across outages, the server clock,
and the start-up safety checks.

Every call has a socket timeout, so nothing hangs on a dead or frozen server. A call that
fails because Redis is unreachable or still loading its data is retried with backoff for
up to ``retry_for`` seconds (so workers ride out a restart and resume by themselves),
then fails with ``BackendError``. Scripts are loaded again when Redis answers NOSCRIPT
(it forgets them on restart). Re-sending a script whose reply was lost is safe: moves
and heartbeats are fenced compare-and-sets, enqueue treats an identical job id as
already stored, and a fetch whose reply was lost only leaves leases that expire.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from genqueue.backends.redis.scripts import Script
from genqueue.errors import BackendError, ConfigError, IdempotencyConflict, InvalidInput
from redis import exceptions as rex

log = logging.getLogger("genqueue.redis")
T = TypeVar("T")

#: Replies of a Redis that is failing over or still starting (redis-py maps each to a
#: class; LOADING is a ConnectionError): worth retrying.
_TRANSIENT = (rex.ReadOnlyError, rex.MasterDownError, rex.TryAgainError, rex.ClusterDownError)
_TRUE = ("1", "true", "yes", "on")
MIN_VERSION = (6, 2)


@dataclass(frozen=True)
class RedisOptions:
    """Connection settings; genqueue's own options ride in the URL's query string."""

    url: str
    prefix: str = "genqueue"
    allow_eviction: bool = False
    retry_for: float = 15.0
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    health_check_interval: int = 10
    max_connections: int = 64

    @classmethod
    def from_url(cls, url: str) -> RedisOptions:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"not a Redis URL: {safe_url(url)}")
        ours: dict[str, str] = {}
        theirs = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OPTION_NAMES:
                ours[key] = value
            else:
                theirs.append((key, value))  # redis-py's own options (ssl_cert_reqs, ...)
        plain = urlunsplit(parts._replace(query=urlencode(theirs)))
        _check_client_options(plain, [key for key, _ in theirs])
        try:
            return cls(
                url=plain,
                prefix=ours.get("prefix", "genqueue"),
                allow_eviction=ours.get("allow_eviction", "0").lower() in _TRUE,
                retry_for=float(ours.get("retry_for", 15.0)),
                socket_timeout=float(ours.get("socket_timeout", 5.0)),
                connect_timeout=float(ours.get("connect_timeout", 2.0)),
                health_check_interval=int(ours.get("health_check_interval", 10)),
                max_connections=int(ours.get("max_connections", 64)),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid option in Redis URL {safe_url(url)}: {exc}") from exc


_OPTION_NAMES = frozenset(
    (
        "prefix",
        "allow_eviction",
        "retry_for",
        "socket_timeout",
        "connect_timeout",
        "health_check_interval",
        "max_connections",
    )
)


def _check_client_options(url: str, names: Sequence[str]) -> None:
    """Refuse an option redis-py does not know (it would fail later with a TypeError)."""
    from redis.asyncio.connection import (
        URL_QUERY_ARGUMENT_PARSERS,
        Connection,
        SSLConnection,
        parse_url,
    )

    known = set(URL_QUERY_ARGUMENT_PARSERS)
    connection = SSLConnection if url.startswith("rediss:") else Connection
    for cls in connection.__mro__:
        init = vars(cls).get("__init__")
        if init is not None:
            known |= set(inspect.signature(init).parameters) - {"self", "args", "kwargs"}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"unknown option {name!r} in the Redis URL {safe_url(url)}: genqueue's "
                f"options are {', '.join(sorted(_OPTION_NAMES))}; others go to redis-py "
                "(e.g. ssl_cert_reqs for rediss://)"
            )
    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {safe_url(url)}: {exc}") from None


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    return url


def make_client(options: RedisOptions) -> Redis:
    pool = BlockingConnectionPool.from_url(
        options.url,
        max_connections=options.max_connections,
        timeout=options.socket_timeout + options.connect_timeout,
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.connect_timeout,
        health_check_interval=options.health_check_interval,
        # Retries are ours (see Connection.call): redis-py would re-send scripts blindly.
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class ServerClock:
    """The server's time, estimated from the times scripts report (no extra round trip)."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.observed_at = 0.0

    def observe(self, server_now: float, sent: float, received: float) -> None:
        # The server read its clock somewhere in the round trip; assume the middle.
        self.offset = server_now - (sent + received) / 2
        self.observed_at = received

    def now(self) -> float | None:
        return None if self.offset is None else time.monotonic() + self.offset

    def stale(self, max_age: float) -> bool:
        return self.offset is None or time.monotonic() - self.observed_at > max_age


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
    """One client with retries, NOSCRIPT handling and clock tracking."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.redis = make_client(options)
        self.clock = ServerClock()
        self._outage_since: float | None = None

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn``, retrying transient failures for up to ``retry_for`` seconds."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = 0.02
        while True:
            try:
                result = await fn()
            except rex.AuthenticationError as exc:
                raise BackendError(f"Redis at {safe_url(self.options.url)}: {exc}") from exc
            except (rex.ConnectionError, rex.TimeoutError, OSError, *_TRANSIENT) as exc:
                _refuse_untrusted(self.options.url, exc)  # waiting cannot fix a certificate
                error: Exception = exc
            except rex.ResponseError as exc:
                raise _response_error(what, exc) from exc
            else:
                if self._outage_since is not None:
                    log.warning(
                        "Redis is reachable again after %.1f s",
                        loop.time() - self._outage_since,
                    )
                    self._outage_since = None
                return result
            now = loop.time()
            if deadline is None:
                deadline = now + self.options.retry_for
                if self._outage_since is None:
                    self._outage_since = now
                    log.warning("Redis call %s failed (%s); retrying", what, error)
            if now + delay > deadline:
                raise BackendError(
                    f"Redis at {safe_url(self.options.url)} is unavailable ({what}: {error})"
                ) from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def evaluate(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script (loading it if Redis forgot it); track the server clock."""

        async def attempt() -> Any:
            sent = time.monotonic()
            try:
                reply = await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                await self.redis.script_load(script.text)
                reply = await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            self.clock.observe(float(reply[0]), sent, time.monotonic())
            return reply

        return await self.call(script.name, attempt)

    async def server_time(self) -> float:
        """Ask Redis for its time (used when no script ran for a while)."""

        async def ask() -> float:
            sent = time.monotonic()
            seconds, micros = await self.redis.time()
            now = seconds + micros / 1e6
            self.clock.observe(now, sent, time.monotonic())
            return float(now)

        return await self.call("TIME", ask)


def _response_error(what: str, exc: rex.ResponseError) -> Exception:
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


# -- start-up checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerReport:
    version: str
    eviction_policy: str | None
    aof: bool | None
    rdb_save: str | None


async def inspect_server(redis: Redis) -> ServerReport:
    server = await redis.info("server")
    memory = await redis.info("memory")
    persistence = await redis.info("persistence")
    policy = memory.get("maxmemory_policy")
    save: str | None
    try:
        save = str((await redis.config_get("save")).get("save", ""))
    except rex.ResponseError:
        save = None  # CONFIG is disabled (managed Redis)
    aof = persistence.get("aof_enabled")
    return ServerReport(
        version=str(server.get("redis_version", "unknown")),
        eviction_policy=str(policy) if policy is not None else None,
        aof=bool(int(aof)) if aof is not None else None,
        rdb_save=save,
    )


def check_server(report: ServerReport, options: RedisOptions) -> None:
    """Refuse a Redis that can lose jobs silently; warn about weaker setups."""
    where = safe_url(options.url)
    try:
        version = tuple(int(p) for p in report.version.split(".")[:2])
    except ValueError:
        version = MIN_VERSION
    if version < MIN_VERSION:
        raise ConfigError(f"Redis {report.version} at {where} is too old; genqueue needs 6.2+")
    log.info("connected to Redis %s at %s", report.version, where)
    policy = report.eviction_policy
    if policy is None:
        log.warning(
            "could not read maxmemory-policy of Redis at %s; make sure it is noeviction, "
            "or Redis may delete jobs when memory runs out",
            where,
        )
    elif policy != "noeviction":
        message = (
            f"Redis at {where} has maxmemory-policy {policy}: when memory runs out it "
            "deletes keys, which loses jobs and dead letters silently. Set "
            "`maxmemory-policy noeviction`, or accept the risk with ?allow_eviction=1."
        )
        if not options.allow_eviction:
            raise ConfigError(message)
        log.warning("%s (allowed by allow_eviction)", message)
    if report.aof is False and report.rdb_save == "":
        log.warning(
            "Redis at %s has persistence off (no AOF, no RDB save points): a restart "
            "loses every job. Enable `appendonly yes` for durable queues.",
            where,
        )
    elif report.aof is False and report.rdb_save is None:
        log.warning("could not check whether Redis at %s persists its data", where)
