"""``rediss://``: TLS to a redis-server with a self-signed CA (Debian's build has TLS).

The server listens on a plain port too, only so the test helper can see it is up; every
genqueue call here goes to the TLS port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from genqueue import App, BackendError, JobState, Worker
from genqueue.cli.main import run
from tests.conftest import FAST, drain
from tests.redis_cluster import LocalCluster
from tests.redis_server import RedisServer, free_port


def certificates(tmp_path: Path) -> dict[str, Path]:
    """A CA, a certificate it signed for 127.0.0.1 (and its key), and an unrelated CA."""
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "other", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.cert_pem.write_to_path(str(files["other"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


def tls_options(files: dict[str, Path], port: int) -> list[str]:
    return [
        "--tls-port", str(port),
        "--tls-cert-file", str(files["cert"]),
        "--tls-key-file", str(files["key"]),
        "--tls-ca-cert-file", str(files["ca"]),
        "--tls-auth-clients", "no",
    ]  # fmt: skip


@pytest.fixture
def tls(make_server: Callable[..., RedisServer], tmp_path: Path) -> tuple[int, Path, Path]:
    """(TLS port, the CA that signed the server's certificate, an unrelated CA)."""
    files = certificates(tmp_path)
    port = free_port()
    make_server(extra=tls_options(files, port))
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


def test_synchronous_producers_send_over_tls_from_their_thread(
    tls: tuple[int, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca, _ = tls
    app = App(url(port, ca))
    app.task("t")(_noop)
    with app.blocking() as client:
        client.enqueue("t", {})  # the first of a queue goes through the loop (registers it)
        backend: Any = app.backend
        replies: list[Any] = []
        send = backend._blocking.send

        def recording(*args: Any) -> Any:
            replies.append(send(*args))
            return replies[-1]

        monkeypatch.setattr(backend._blocking, "send", recording)
        job = client.enqueue("t", {"n": 1})
        assert len(replies) == 1 and replies[0] is not None  # sent over TLS, answered
        assert client.get(job.id).data == {"n": 1}


async def _noop(ctx: Any) -> None:
    return None


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


@pytest.mark.slow
async def test_jobs_run_on_a_cluster_over_tls(tmp_path: Path) -> None:
    # Every node serves clients and the cluster bus over TLS (tls-cluster), so the nodes
    # tell clients their TLS ports; the plain ports only let the helper see them up.
    files = certificates(tmp_path)
    cluster = LocalCluster(masters=3)
    tls_ports = []
    for node in cluster.nodes:
        tls_ports.append(free_port())
        node.extra += [*tls_options(files, tls_ports[-1]), "--tls-cluster", "yes"]
    cluster.start()
    try:
        seeds = ",".join(f"127.0.0.1:{port}" for port in tls_ports)
        app = App(f"rediss+cluster://{seeds}/?ssl_ca_certs={files['ca']}")

        @app.task("echo")
        async def echo(ctx):  # type: ignore[no-untyped-def]
            return ctx.data

        async with app:
            jobs = [await app.enqueue("echo", {"i": i}, queue=f"q{i}") for i in range(6)]
            queues = [f"q{i}" for i in range(6)]  # in slots of all three masters
            await Worker(app, queues=queues, burst=True, settings=FAST).run()
            done = [await app.get(job.id) for job in jobs]
        assert [job.result for job in done] == [{"i": i} for i in range(6)]
        with pytest.raises(BackendError, match="ssl_ca_certs"):
            async with App(f"rediss+cluster://{seeds}/?ssl_ca_certs={files['other']}"):
                pass
    finally:
        cluster.close()
