"""The PostgreSQL that tests use: the machine's server, one fresh schema per test.

Tests connect to ``postgresql://postgres@127.0.0.1:5432/test`` (trust auth), or to the
URL in ``GENQUEUE_TEST_POSTGRES``. Each test gets its own schema through the backend's
``?schema=`` option (``gqt_<session>_<test>``; the model test takes a new one per
example), so tests never see each other's jobs and need no cleanup between them; every
schema this test process created is dropped when it exits.

Without a reachable server the PostgreSQL tests are skipped with a message, except when
the ``CI`` environment variable is set: then they fail, so CI cannot go green by skipping
(``.ci/run`` starts the server first).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import uuid

import pytest

from genqueue.backends.postgres.options import with_options

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_SESSION_SALT = uuid.uuid4().hex[:8]
_created: list[str] = []
_reachable: str | None = None  # "" when reachable, else why not


def server_url() -> str:
    return os.environ.get("GENQUEUE_TEST_POSTGRES", DEFAULT_URL)


def require_postgres() -> str:
    """The server's URL; skips (or fails under CI) when it cannot be reached."""
    global _reachable  # noqa: PLW0603 - checked once per test process
    if _reachable is None:
        _reachable = _probe(server_url())
    if _reachable:
        message = f"PostgreSQL is not reachable at {server_url()} ({_reachable}); start it (bash scripts/postgres-ready) or set GENQUEUE_TEST_POSTGRES"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return server_url()


def _probe(url: str) -> str:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install 'genqueue[postgres]'"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return ""


def new_schema(kind: str = "t") -> str:
    """A schema name unique to the running test (stable within it) or, with another
    ``kind``, unique at every call; remembered for the drop at exit."""
    if kind == "t":
        node = os.environ.get("PYTEST_CURRENT_TEST", uuid.uuid4().hex).rsplit(" (", 1)[0]
        tail = hashlib.sha1(node.encode()).hexdigest()[:12]
    else:
        tail = uuid.uuid4().hex[:12]
    name = f"gq{kind}_{_SESSION_SALT}_{tail}"
    if name not in _created:
        if not _created:
            atexit.register(_drop_created)
        _created.append(name)
    return name


def postgres_url_for_test(kind: str = "t", **options: str) -> str:
    return with_options(require_postgres(), schema=new_schema(kind), **options)


def _drop_created() -> None:
    import psycopg

    try:
        with psycopg.connect(server_url(), autocommit=True, connect_timeout=3) as conn:
            for start in range(0, len(_created), 50):
                names = ", ".join(f'"{n}"' for n in _created[start : start + 50])
                conn.execute(f"DROP SCHEMA IF EXISTS {names} CASCADE")  # type: ignore[arg-type]
    except psycopg.Error:
        pass  # the server went away; the schemas are only test leftovers
