"""PostgreSQL URLs: genqueue's own options, and everything else left to libpq.

``postgresql://user:password@host:5432/dbname?schema=genqueue&sslmode=require``: the
options below are genqueue's and are taken out of the URL; every other query option is
libpq's (``sslmode``, ``application_name``, ``connect_timeout``, ``options``, ...) and is
checked by libpq's own parser, so a misspelt option fails at once with one line, not at
the first connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from genqueue.errors import ConfigError

SCHEMES = ("postgresql", "postgres")
#: A schema name genqueue accepts: it also names the NOTIFY channel ("genqueue.<schema>"),
#: which PostgreSQL caps at 63 bytes.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_OPTION_NAMES = frozenset(("schema", "pool_min", "pool_max", "retry_for", "pool_timeout"))


@dataclass(frozen=True)
class PostgresOptions:
    """Connection settings; genqueue's own options ride in the URL's query string."""

    #: The URL without genqueue's options: what libpq connects to.
    conninfo: str
    #: Where genqueue's tables live (created if missing). Several apps, or tests, can
    #: share one database with a schema each.
    schema: str = "genqueue"
    pool_min: int = 1
    pool_max: int = 10
    #: Seconds a call rides out an unreachable server (retrying) before it fails.
    retry_for: float = 15.0
    #: Seconds to wait for a free (or new) connection of the pool.
    pool_timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str) -> PostgresOptions:
        parts = urlsplit(url)
        if parts.scheme.lower() not in SCHEMES:
            raise ConfigError(f"not a PostgreSQL URL: {safe_url(url)}")
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OPTION_NAMES:
                ours[key] = value
            else:
                theirs.append((key, value))  # libpq's own (sslmode, application_name, ...)
        conninfo = urlunsplit(parts._replace(query=urlencode(theirs)))
        _check_libpq(conninfo, url)
        schema = ours.get("schema", "genqueue")
        if not _SCHEMA.match(schema):
            raise ConfigError(
                f"invalid schema {schema!r} in {safe_url(url)}: use 1-48 lowercase letters, "
                "digits and _, starting with a letter or _"
            )
        try:
            options = cls(
                conninfo=conninfo,
                schema=schema,
                pool_min=int(ours.get("pool_min", 1)),
                pool_max=int(ours.get("pool_max", 10)),
                retry_for=float(ours.get("retry_for", 15.0)),
                pool_timeout=float(ours.get("pool_timeout", 10.0)),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid option in PostgreSQL URL {safe_url(url)}: {exc}") from exc
        if not 0 <= options.pool_min <= options.pool_max or options.pool_max < 1:
            raise ConfigError(f"need 0 <= pool_min <= pool_max and pool_max >= 1 in {url}")
        return options


def _check_libpq(conninfo: str, url: str) -> None:
    """Refuse what libpq would refuse (an unknown option, a malformed URL), now."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"invalid PostgreSQL URL {safe_url(url)}: {str(exc).strip()}; genqueue's own "
            f"options are {', '.join(sorted(_OPTION_NAMES))}, the others go to libpq"
        ) from None


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    return url


def with_options(url: str, **options: str) -> str:
    """``url`` with query options set (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in options]
    return urlunsplit(parts._replace(query=urlencode([*query, *options.items()])))
