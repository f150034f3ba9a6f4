"""The backend URL a command will use, checked before anything is opened or created.

Each mistake is one line and exit code 1: an option the backend does not know, a SQLite
file in a directory that does not exist (it is not created behind the user's back), or
``memory://`` (its jobs live inside one process, and every command is a new process).

Commands other than ``worker`` give up on an unreachable Redis or PostgreSQL within a few
seconds (``retry_for``/``connect_timeout``/``pool_timeout`` below, unless the URL sets
them): a person is waiting. A worker keeps the library's defaults and rides out a
restart of the server.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from genqueue.errors import ConfigError

if TYPE_CHECKING:
    from genqueue.backends import Backend
    from genqueue.clock import Clock

#: What a command (not a worker) allows an unreachable Redis before it gives up.
CLI_REDIS_PATIENCE = {"retry_for": 1.0, "connect_timeout": 1.0}
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
#: The same for PostgreSQL (connect_timeout is libpq's own option).
CLI_POSTGRES_PATIENCE = {"retry_for": "1", "pool_timeout": "2", "connect_timeout": "2"}
SQLITE_OPTIONS = {"busy_timeout_ms", "synchronous"}
SQLITE_SYNCHRONOUS = ("off", "normal", "full", "extra")


def cli_backend_url(url: str, *, allow_memory: bool = False) -> str:
    """``url``, checked for use from the command line."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory" and not allow_memory:
        raise ConfigError(
            "memory:// keeps jobs inside one process, and every genqueue command is a new "
            "process, so they would never see each other's jobs; use sqlite:///genqueue.db "
            "(the default, a file shared by every command and worker) or redis://"
        )
    if scheme == "sqlite":
        _check_sqlite(url)
    return url


def impatient_backend(url: str, clock: Clock) -> Backend | None:
    """For a command (not a worker): a Redis backend that gives up on an unreachable
    server within seconds, unless the URL sets its own ``retry_for``/``connect_timeout``.
    None for other URLs."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("postgresql", "postgres"):
        return _impatient_postgres(url, clock)
    if parts.scheme.lower() not in REDIS_SCHEMES:
        return None
    try:
        from genqueue.backends.redis import RedisBackend
        from genqueue.backends.redis.connection import RedisOptions
    except ImportError:
        return None  # the backend factory explains the missing extra
    given = {key for key, _ in parse_qsl(parts.query)}
    options = RedisOptions.from_url(url)
    if "retry_for" not in given:
        options = dataclasses.replace(options, retry_for=CLI_REDIS_PATIENCE["retry_for"])
    if "connect_timeout" not in given:
        options = dataclasses.replace(
            options, connect_timeout=CLI_REDIS_PATIENCE["connect_timeout"]
        )
    return RedisBackend(options, clock=clock, url=url)


def _impatient_postgres(url: str, clock: Clock) -> Backend | None:
    try:
        from genqueue.backends.postgres import PostgresBackend
        from genqueue.backends.postgres.options import with_options
    except ImportError:
        return None  # the backend factory explains the missing extra
    PostgresBackend.from_url(url)  # a bad URL is explained as the user wrote it
    given = {key for key, _ in parse_qsl(urlsplit(url).query)}
    patience = {k: v for k, v in CLI_POSTGRES_PATIENCE.items() if k not in given}
    return PostgresBackend(with_options(url, **patience), clock=clock, url=url)


def _check_sqlite(url: str) -> None:
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in SQLITE_OPTIONS:
            raise ConfigError(
                f"unknown option {key!r} in the SQLite URL {url}: "
                f"the options are {', '.join(sorted(SQLITE_OPTIONS))}"
            )
        if key == "synchronous" and value.lower() not in SQLITE_SYNCHRONOUS:
            raise ConfigError(
                f"invalid synchronous={value!r} in {url}: use {', '.join(SQLITE_SYNCHRONOUS)}"
            )
        if key == "busy_timeout_ms" and not (value.isdigit() and int(value) > 0):
            raise ConfigError(f"invalid busy_timeout_ms={value!r} in {url}: use milliseconds")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path or path == ":memory:":
        return  # the backend explains a malformed URL itself
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError(
            f"directory {folder} does not exist (from {url}); create it first, or fix the "
            "path: sqlite:///relative/file.db or sqlite:////absolute/file.db"
        )


def safe_url(url: str) -> str:
    """``url`` without its password (the command line repeats URLs in errors)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")  # hosts: one, or a cluster's seeds
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def unreachable_hint(url: str) -> str:
    """What to check when the backend at ``url`` cannot be opened."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        return (
            "check that Redis is running and reachable at that address, and the URL "
            "(--backend or GENQUEUE_BACKEND)"
        )
    if scheme in ("postgresql", "postgres"):
        return (
            "check that PostgreSQL is running and reachable at that address, that the user "
            "may connect to that database, and the URL (--backend or GENQUEUE_BACKEND)"
        )
    return "check the path, its permissions and the URL (--backend or GENQUEUE_BACKEND)"
