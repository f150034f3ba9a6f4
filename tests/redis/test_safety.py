"""Start-up checks: eviction policy, persistence, version, managed Redis without CONFIG."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from genqueue import App, BackendError, ConfigError, JobRequest, JobState
from genqueue.backends.base import Move
from genqueue.backends.redis import RedisBackend
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
MakeServer = Callable[..., RedisServer]


async def test_refuses_a_redis_that_evicts_keys(make_server: MakeServer) -> None:
    server = make_server(extra=["--maxmemory-policy", "allkeys-lru"])
    backend = RedisBackend.from_url(server.url("p"))
    with pytest.raises(ConfigError, match=r"allkeys-lru.*noeviction.*allow_eviction=1"):
        await backend.open()
    await backend.close()


@pytest.mark.parametrize("how", ["url", "flag"])
async def test_eviction_can_be_allowed_explicitly(
    make_server: MakeServer, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(extra=["--maxmemory-policy", "volatile-lru"])
    if how == "url":
        backend = RedisBackend.from_url(server.url("p", allow_eviction="1"))
    else:
        backend = RedisBackend(server.url("p"), allow_eviction=True)
    with caplog.at_level(logging.WARNING, "genqueue.redis"):
        await backend.open()
    await backend.close()
    assert "volatile-lru" in caplog.text and "allowed by allow_eviction" in caplog.text


async def test_reports_version_and_warns_when_persistence_is_off(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    backend = RedisBackend.from_url(server.url("p"))
    with caplog.at_level(logging.INFO, "genqueue.redis"):
        await backend.open()
    await backend.close()
    assert backend.server_version is not None and backend.server_version[0].isdigit()
    assert f"connected to Redis {backend.server_version}" in caplog.text
    assert "persistence off" in caplog.text


async def test_no_persistence_warning_with_aof(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(aof=True)
    with caplog.at_level(logging.INFO, "genqueue.redis"):
        async with App(server.url("p")):
            pass
    assert "connected to Redis" in caplog.text and "persistence" not in caplog.text


async def test_managed_redis_without_config_command(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(extra=["--rename-command", "CONFIG", ""])
    app = App(server.url("p"))

    @app.task("t")
    async def t(ctx: object) -> int:
        return 1

    with caplog.at_level(logging.INFO, "genqueue.redis"):
        async with app:
            job = await app.enqueue("t", {})
            assert (await app.get(job.id)).id == job.id
    assert "could not check whether Redis" in caplog.text


async def test_unreachable_redis_fails_fast_with_a_clear_error() -> None:
    from tests.redis_server import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?retry_for=0.3&connect_timeout=0.5"
    backend = RedisBackend.from_url(url)
    with pytest.raises(BackendError, match="unavailable"):
        await backend.open()
    await backend.close()


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisBackend.from_url("redis://localhost/0?prefix=a{b}")
    with pytest.raises(ConfigError, match="invalid option"):
        RedisBackend.from_url("redis://localhost/0?retry_for=soon")


def test_password_is_not_shown() -> None:
    backend = RedisBackend.from_url("redis://user:s3cret@localhost:6390/0")
    assert "s3cret" not in repr(backend)


async def test_out_of_memory_is_a_clear_error_and_stores_nothing(make_server: MakeServer) -> None:
    # Room above what stays after a full purge (3.1 MB here: Redis, cached scripts, the
    # queue registry), so that a purge brings memory back under the limit.
    server = make_server(extra=["--maxmemory", "5mb", "--maxmemory-policy", "noeviction"])
    app = App(server.url("p"))
    app.task("t")(_noop)
    stored = 0
    async with app:
        with pytest.raises(BackendError, match="out of memory"):
            for _ in range(1000):
                batch = [JobRequest("t", {"pad": "x" * 2000}) for _ in range(50)]
                stored += len(await app.queue.enqueue_many(batch))
        assert stored > 0
        counts = await app.backend.counts()
        assert counts == {"default": {"queued": stored}}  # no half-written batch
        # Draining frees memory; then enqueue works again without a restart.
        while jobs := await app.backend.fetch(["default"], "w", 500, 30):
            done = [replace(j, state=JobState.COMPLETED, finished_at=j.started_at) for j in jobs]
            moves = [Move(d, JobState.ACTIVE, j.attempts) for d, j in zip(done, jobs, strict=True)]
            assert all(await app.backend.move(moves))
        assert await app.backend.purge_finished(1e12, 1e12, 100_000) == stored
        assert (await app.enqueue("t", {})).state is JobState.QUEUED


async def _noop(ctx: object) -> None:
    return None
