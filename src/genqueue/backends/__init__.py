"""Backend selection by URL; concrete backends are imported only when asked for.

* ``memory://``: in this process only (tests, the reference semantics)
* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: the embedded default
* ``redis://host:port/db``, ``rediss://...``: shared by any number of machines
* ``redis+cluster://host:port,host:port/``, ``rediss+cluster://...``: Redis Cluster
* ``postgresql://user@host:port/db`` (or ``postgres://``): shared, in PostgreSQL, with
  transactional enqueue
"""

from __future__ import annotations

from urllib.parse import urlsplit

from genqueue.backends.base import Backend, Capabilities, JobQuery, Lease, Move, RunningUpdate
from genqueue.clock import Clock
from genqueue.errors import ConfigError

__all__ = [
    "Backend",
    "Capabilities",
    "JobQuery",
    "Lease",
    "Move",
    "RunningUpdate",
    "create_backend",
]


def create_backend(url: str, clock: Clock | None = None) -> Backend:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from genqueue.backends.memory import MemoryBackend

        return MemoryBackend(clock=clock, url=url)
    if scheme == "sqlite":
        from genqueue.backends.sqlite import SQLiteBackend

        return SQLiteBackend.from_url(url, clock=clock)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        try:
            from genqueue.backends.redis import RedisBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from genqueue.errors import MissingExtra

            raise MissingExtra("redis", "redis") from exc
        return RedisBackend.from_url(url, clock=clock)
    if scheme in ("postgresql", "postgres"):
        try:
            from genqueue.backends.postgres import PostgresBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from genqueue.errors import MissingExtra

            raise MissingExtra("psycopg", "postgres") from exc
        return PostgresBackend.from_url(url, clock=clock)
    raise ConfigError(
        f"unsupported backend URL {url!r}: use memory://, sqlite:///path.db, "
        "redis://host:port/db, redis+cluster://host:port,host:port/ or "
        "postgresql://user@host:port/db"
    )
