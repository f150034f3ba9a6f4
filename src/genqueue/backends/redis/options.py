"""Redis URLs: genqueue's options, redis-py's options, and Redis Cluster seed nodes.

Two URL forms::

    redis://host:6379/0?prefix=...          one Redis server (rediss:// for TLS)
    redis+cluster://h1:7000,h2:7001/?...    Redis Cluster (rediss+cluster:// for TLS)

A cluster URL names one or more *seed* nodes (comma-separated); the client asks them for
the cluster's layout and finds every other node itself, so any reachable subset will do.
Redis Cluster has only database 0, so a cluster URL has no database number (``/`` or
``/0``). Credentials and redis-py's own options (``ssl_ca_certs``, ...) apply to every
node. genqueue's options (below) ride in the same query string and are taken out before
the rest goes to redis-py; an option neither knows is refused here, not later.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from genqueue.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
STANDALONE_SCHEMES = ("redis", "rediss")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisOptions:
    """Connection settings; genqueue's own options ride in the URL's query string."""

    #: A plain redis:// URL for redis-py (for a cluster: its first seed node).
    url: str
    prefix: str = "genqueue"
    allow_eviction: bool = False
    retry_for: float = 15.0
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    health_check_interval: int = 10
    max_connections: int = 64
    #: After each script that writes, WAIT until this many replicas have it (0: never).
    wait_replicas: int = 0
    #: How long (seconds) such a WAIT may take before genqueue goes on without it.
    wait_timeout: float = 0.5
    #: Redis Cluster: the seed nodes (host, port) of a redis+cluster:// URL.
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def cluster(self) -> bool:
        return bool(self.nodes)

    @property
    def where(self) -> str:
        """Where Redis is, for messages: the URL without its password, or a cluster's seeds."""
        if self.cluster:
            return "Redis Cluster at " + ",".join(_host_port(*node) for node in self.nodes)
        return f"Redis at {safe_url(self.url)}"

    @classmethod
    def from_url(cls, url: str) -> RedisOptions:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        nodes: tuple[tuple[str, int], ...] = ()
        if scheme in CLUSTER_SCHEMES:
            parts, nodes = _cluster_parts(url)
        elif scheme not in STANDALONE_SCHEMES:
            raise ConfigError(f"not a Redis URL: {safe_url(url)}")
        ours: dict[str, str] = {}
        theirs = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OPTION_NAMES:
                ours[key] = value
            else:
                theirs.append((key, value))  # redis-py's own options (ssl_cert_reqs, ...)
        plain = urlunsplit(parts._replace(query=urlencode(theirs)))
        _check_client_options(plain, [key for key, _ in theirs], cluster=bool(nodes))
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
                wait_replicas=_non_negative(int(ours.get("wait_replicas", 0)), "wait_replicas"),
                wait_timeout=_non_negative(float(ours.get("wait_timeout", 0.5)), "wait_timeout"),
                nodes=nodes,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid option in Redis URL {safe_url(url)}: {exc}") from exc

    def node_url(self, host: str, port: int) -> str:
        """The plain URL of one node (a cluster's nodes share credentials and options)."""
        parts = urlsplit(self.url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{_host_port(host, port)}"))


_OPTION_NAMES = frozenset(
    (
        "prefix",
        "allow_eviction",
        "retry_for",
        "socket_timeout",
        "connect_timeout",
        "health_check_interval",
        "max_connections",
        "wait_replicas",
        "wait_timeout",
    )
)


def _non_negative(value: Any, name: str) -> Any:
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cluster_parts(url: str) -> tuple[Any, tuple[tuple[str, int], ...]]:
    """(the URL of the first seed node, as a plain redis URL; every seed node)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in (h.strip() for h in hosts.split(",")):
        if not item:
            continue
        host, port = item, DEFAULT_PORT
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else -1
        elif ":" in item:
            host, _, text = item.rpartition(":")
            port = int(text) if text.isdigit() else -1
        if not host or not 0 < port < 65536:
            raise ConfigError(f"invalid node {item!r} in the Redis Cluster URL {safe_url(url)}")
        nodes.append((host, port))
    if not nodes:
        raise ConfigError(
            f"no node in the Redis Cluster URL {safe_url(url)}: "
            "use redis+cluster://host:port[,host:port...]/"
        )
    if parts.path not in ("", "/", "/0"):
        raise ConfigError(
            f"Redis Cluster has only database 0, but {safe_url(url)} names "
            f"{parts.path.lstrip('/')!r}; end the nodes with / instead"
        )
    scheme = parts.scheme.lower().removesuffix("+cluster")
    first = parts._replace(scheme=scheme, netloc=f"{userinfo}{at}{_host_port(*nodes[0])}")
    return first._replace(path="/0"), tuple(nodes)


def _check_client_options(url: str, names: Sequence[str], *, cluster: bool) -> None:
    """Refuse an option redis-py does not know (it would fail later with a TypeError)."""
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import (
        URL_QUERY_ARGUMENT_PARSERS,
        Connection,
        SSLConnection,
        parse_url,
    )

    known = set(URL_QUERY_ARGUMENT_PARSERS)
    if cluster:  # the cluster client takes only the connection options it names
        known = set(inspect.signature(RedisCluster.__init__).parameters) - {"self"}
    else:
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
    """The URL without its password, for messages and logs (one host or several)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))
