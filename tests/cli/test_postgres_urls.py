"""The command line on PostgreSQL: a URL that is wrong, a server that is away, patience."""

from __future__ import annotations

import pytest

from genqueue.cli.common import load_app
from genqueue.cli.urls import CLI_POSTGRES_PATIENCE
from tests.cli.conftest import Runner
from tests.redis_server import free_port

pytestmark = pytest.mark.postgres


def test_an_unreachable_server_fails_fast_with_what_to_check(cli: Runner) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/test"
    code, out, err = cli("dlq", "list", "-b", url)
    assert code == 1 and out == ""
    assert err.count("\n") == 1, err  # one line, no traceback, no pool warnings
    assert "cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1" in err
    assert "Connection refused" in err and "check that PostgreSQL is running" in err
    assert "secret" not in err


def test_an_unknown_option_is_one_line(cli: Runner) -> None:
    code, _, err = cli("dlq", "list", "-b", "postgresql://127.0.0.1/test?schema=x&bogus=1")
    assert code == 1 and err.count("\n") == 1, err
    assert 'invalid URI query parameter: "bogus"' in err and "retry_for" in err
    assert "pool_timeout=2" not in err  # the URL as the user wrote it


def test_commands_give_up_sooner_than_workers() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    impatient = load_app(None, url).backend
    assert impatient.url == url
    assert impatient.options.retry_for == float(CLI_POSTGRES_PATIENCE["retry_for"])  # type: ignore[attr-defined]
    assert "connect_timeout=2" in impatient.options.conninfo  # type: ignore[attr-defined]
    patient = load_app(None, url, worker=True).backend
    assert patient.options.retry_for == 15.0  # type: ignore[attr-defined]
    assert "connect_timeout" not in patient.options.conninfo  # type: ignore[attr-defined]
    chosen = load_app(None, url + "?retry_for=7").backend  # the URL's own setting wins
    assert chosen.options.retry_for == 7.0  # type: ignore[attr-defined]
