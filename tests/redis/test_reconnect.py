"""Redis goes away: calls fail cleanly within bounds, workers resume by themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from genqueue import App, BackendError, JobRequest, JobState, Worker, WorkerSettings
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
MakeServer = Callable[..., RedisServer]
SETTINGS = WorkerSettings(concurrency=10, poll_interval=0.02, sweep_interval=3600)


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def counting_app(url: str, done: list[str]) -> App:
    app = App(url)

    @app.task("t")
    async def t(ctx: Any) -> None:
        await asyncio.sleep(0.002)
        done.append(ctx.id)

    return app


async def test_worker_rides_out_a_restart_and_finishes(make_server: MakeServer) -> None:
    server = make_server(aof=True)
    done: list[str] = []
    app = counting_app(server.url("r", retry_for="30"), done)
    async with app:
        jobs = await app.queue.enqueue_many([JobRequest("t", {"i": i}) for i in range(400)])
        worker = Worker(app, settings=SETTINGS)
        runner = asyncio.create_task(worker.run())

        async def some_done() -> bool:
            return len(done) >= 50

        await wait_until(some_done, 20, "the first jobs")
        server.kill()
        await asyncio.sleep(0.5)
        server.start()

        async def all_done() -> bool:
            counts = await app.backend.counts()
            return counts.get("default", {}).get("completed", 0) == len(jobs)

        await wait_until(all_done, 40, "every job to complete after the restart")
        assert not runner.done(), "the worker stopped"
        worker.request_stop()
        await asyncio.wait_for(runner, 10)
    assert set(done) == {j.id for j in jobs}


async def test_worker_resumes_on_an_empty_restarted_redis(make_server: MakeServer) -> None:
    server = make_server()  # no persistence: the restart loses everything
    done: list[str] = []
    app = counting_app(server.url("r", retry_for="30"), done)
    async with app:
        worker = Worker(app, settings=SETTINGS)
        runner = asyncio.create_task(worker.run())
        first = await app.enqueue("t", {})
        await wait_until(lambda: _true(first.id in done), 10, "the first job")
        server.kill()
        await asyncio.sleep(0.3)
        server.start()
        second = await app.enqueue("t", {})
        await wait_until(lambda: _true(second.id in done), 20, "a job after the restart")
        assert (await app.get(second.id)).state is JobState.COMPLETED
        assert not runner.done()
        worker.request_stop()
        await asyncio.wait_for(runner, 10)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("fault", ["killed", "frozen"])
async def test_calls_fail_cleanly_then_recover(make_server: MakeServer, fault: str) -> None:
    server = make_server()
    url = server.url("r", retry_for="0.5", socket_timeout="0.5", connect_timeout="0.5")
    app = App(url)
    app.task("t")(_noop)
    async with app:
        await app.enqueue("t", {})
        if fault == "killed":
            server.kill()
        else:
            server.pause()
        started = time.monotonic()
        with pytest.raises(BackendError, match="unavailable"):
            await app.backend.fetch(["default"], "w", 10, 30)
        with pytest.raises(BackendError):
            await app.enqueue("t", {})
        assert time.monotonic() - started < 10  # bounded, never a hang
        if fault == "killed":
            server.start()
        else:
            server.resume()
        # The pool reconnects by itself. (A frozen server still runs the commands it had
        # received, so the first fetch may have claimed the job: its lease will expire.)
        job = await app.enqueue("t", {})
        assert (await app.get(job.id)).state is JobState.QUEUED


async def _noop(ctx: Any) -> None:
    return None


async def test_scripts_are_loaded_again_when_redis_forgets_them() -> None:
    import redis.asyncio as aioredis

    from tests.redis_server import redis_url_for_test, session_server

    app = App(redis_url_for_test())
    app.task("t")(_noop)
    async with app:
        client = aioredis.Redis(port=session_server().port)
        await client.script_flush()
        await client.aclose()
        job = await app.enqueue("t", {})
        [claimed] = await app.backend.fetch(["default"], "w", 5, 30)
        assert claimed.id == job.id


async def test_a_connection_closed_under_a_write_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py reports a connection closed while a command is written to it as the
    transport's AttributeError (seen while a cluster's slots moved): the call is
    retried like after a ConnectionError, and stores its job once."""
    from redis.asyncio.connection import Connection as RedisConnection

    from tests.redis_server import redis_url_for_test

    app = App(redis_url_for_test())
    app.task("t")(_noop)
    real = RedisConnection._send_packed_command
    broken = []

    async def closed_under_us(self: RedisConnection, command: Any) -> None:
        if not broken:
            broken.append(self)
            writer, self._writer = self._writer, None  # as another task's disconnect leaves it
            if writer is not None:
                writer.close()
        await real(self, command)

    async with app:
        monkeypatch.setattr(RedisConnection, "_send_packed_command", closed_under_us)
        job = await app.enqueue("t", {"n": 1})
        monkeypatch.undo()
        assert broken, "no write met a closed connection: nothing was tested"
        assert (await app.get(job.id)).state is JobState.QUEUED
        page = await app.queue.list(limit=10)
        assert [j.id for j in page.items] == [job.id]


async def test_an_attribute_error_of_our_own_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only redis-py's write path is forgiven: the same error raised in genqueue's own
    code during a call is a bug, and surfaces at once instead of being retried."""
    from tests.redis_server import redis_url_for_test

    app = App(redis_url_for_test())
    app.task("t")(_noop)
    calls = []

    def bug(*args: Any) -> None:
        calls.append(args)
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    async with app:
        monkeypatch.setattr(app.backend.conn.clock, "observe", bug)  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            await app.enqueue("t", {})
        assert len(calls) == 1


@pytest.mark.parametrize("jobs", [1, 2])
async def test_a_move_whose_reply_was_lost_is_reported_applied_when_sent_again(
    monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """The first send of a move runs but its reply is lost; the retry finds the job as
    the move left it and reports it applied (the worker then announces the outcome
    instead of calling it discarded), without applying it twice. (One job: one script
    call; two jobs in two queues: one pipeline.)"""
    from tests.conformance.helpers import completing
    from tests.redis_server import redis_url_for_test

    app = App(redis_url_for_test())
    app.task("t")(_noop)
    async with app:
        backend: Any = app.backend
        queues = ["a", "b"][:jobs]
        for queue in queues:
            await app.enqueue("t", {}, queue=queue)
        claimed = await backend.fetch(queues, "w", jobs, 30)
        now = await backend.time()
        moves = completing(claimed, now)
        lose_reply_of_first_move(monkeypatch, backend.conn)
        assert await backend.move(moves) == [True] * jobs
        assert {q: c for q, c in (await backend.counts()).items()} == {
            q: {"completed": 1} for q in queues
        }
        # Sent afresh (not a retry), the same move is refused as before.
        assert await backend.move(moves[:1]) == [False]


def lose_reply_of_first_move(monkeypatch: pytest.MonkeyPatch, conn: Any) -> None:
    """The first move call (alone or in a pipeline) runs on Redis, then its connection
    fails before the reply is read."""
    import redis.exceptions as rex

    run, pipeline = conn._run, conn._pipeline
    lost: list[bool] = []

    async def run_once(script: Any, keys: Any, args: Any) -> Any:
        reply = await run(script, keys, args)
        if script.name == "move" and not lost:
            lost.append(True)
            raise rex.ConnectionError("connection reset while reading the reply")
        return reply

    async def pipeline_once(named: Any, todo: Any, results: Any) -> None:
        if any(named[i][0].name == "move" for i in todo) and not lost:
            lost.append(True)
            await pipeline(named, todo, list(results))  # run, and lose every reply
            raise rex.ConnectionError("connection reset while reading the replies")
        await pipeline(named, todo, results)

    monkeypatch.setattr(conn, "_run", run_once)
    monkeypatch.setattr(conn, "_pipeline", pipeline_once)
