"""``rediss://``: TLS to a redis-server with a self-signed CA (Debian's build has TLS).

The server listens on a plain port too, only so the test helper can see it is up; every
genqueue call here goes to the TLS port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from genqueue import App, BackendError, JobState
from genqueue.cli.main import run
from tests.conftest import drain
from tests.redis_server import RedisServer, free_port


@pytest.fixture
def tls(make_server: Callable[..., RedisServer], tmp_path: Path) -> tuple[int, Path, Path]:
    """(TLS port, the CA that signed the server's certificate, an unrelated CA)."""
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "other", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.cert_pem.write_to_path(str(files["other"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    port = free_port()
    make_server(extra=[
        "--tls-port", str(port),
        "--tls-cert-file", str(files["cert"]),
        "--tls-key-file", str(files["key"]),
        "--tls-ca-cert-file", str(files["ca"]),
        "--tls-auth-clients", "no",
    ])  # fmt: skip
    return port, files["ca"], files["other"]


def url(port: int, ca: Path, **options: str) -> str:
    query = "&".join([f"ssl_ca_certs={ca}", *(f"{k}={v}" for k, v in options.items())])
    return f"rediss://127.0.0.1:{port}/0?{query}"


async def test_jobs_run_over_tls_with_the_servers_ca(tls: tuple[int, Path, Path]) -> None:
    port, ca, _ = tls
    app = App(url(port, ca))

    @app.task("echo")
    async def echo(ctx):  # type: ignore[no-untyped-def]
        return ctx.data

    async with app:
        job = await app.enqueue("echo", {"over": "tls"})
        await drain(app)
        done = await app.get(job.id)
        assert done.state is JobState.COMPLETED and done.result == {"over": "tls"}


async def test_a_wrong_ca_is_refused_at_once_with_a_clear_error(
    tls: tuple[int, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, _, other = tls
    caplog.set_level(logging.WARNING, logger="genqueue.redis")
    with pytest.raises(BackendError) as raised:
        async with App(url(port, other)):
            pass
    message = str(raised.value)
    assert "TLS certificate was refused" in message and "ssl_ca_certs" in message
    # Not retried like an outage (for 15 s by default): a certificate does not heal.
    assert "retrying" not in caplog.text


def test_the_cli_says_so_in_one_line(
    tls: tuple[int, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _, other = tls
    code = run(["jobs", "list", "--backend", url(port, other)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "ssl_ca_certs" in err
