"""Synchronous producers on Redis: ``BlockingClient.enqueue`` sends the enqueue script
from the caller's own thread (``Backend.enqueue_now``), and hands the same jobs to the
event loop's retrying path after a failure that waiting may cure, storing each once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions as rex

from genqueue import App, FakeClock, JobState
from genqueue.blocking import BlockingClient
from tests.conformance.helpers import Recorder
from tests.redis_server import redis_url_for_test

pytestmark = pytest.mark.redis


async def _noop(ctx: Any) -> None:
    return None


@pytest.fixture
def client() -> Iterator[BlockingClient]:
    app = App(redis_url_for_test(), clock=FakeClock())
    app.task("t")(_noop)
    with app.blocking() as client:
        client.enqueue("t", {"first": True})  # through the loop: registers the queue
        yield client


def _loop_calls(client: BlockingClient, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record what the client runs on its event loop from now on."""
    calls: list[Any] = []
    run = client.run

    def recording(coro: Any, timeout: float | None = None) -> Any:
        calls.append(coro.__qualname__)
        return run(coro, timeout)

    monkeypatch.setattr(client, "run", recording)
    return calls


def _break_sends(client: BlockingClient, monkeypatch: pytest.MonkeyPatch, *, run: bool) -> None:
    """The next send from the caller's thread fails with a lost connection, after the
    script ran (``run``: its reply is lost) or before."""
    blocking = client.app.backend._blocking  # type: ignore[attr-defined]
    redis = blocking._redis()
    assert redis is not None
    evalsha, broken = redis.evalsha, []

    def failing(*args: Any) -> Any:
        if not broken:
            broken.append(True)
            if run:
                evalsha(*args)
            raise rex.ConnectionError("Connection closed by server.")
        return evalsha(*args)

    monkeypatch.setattr(redis, "evalsha", failing)


def test_enqueues_are_sent_from_the_callers_thread(
    client: BlockingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(client.app)
    threads: list[int] = []
    client.app.events.subscribe(lambda event: threads.append(threading.get_ident()))
    calls = _loop_calls(client, monkeypatch)
    jobs = [client.enqueue("t", {"n": n}) for n in range(5)]
    keyed = client.enqueue("t", {"k": 1}, idempotency_key="k")
    assert client.enqueue("t", {"k": 1}, idempotency_key="k").id == keyed.id
    assert calls == []  # no hop to the client's event loop
    assert [f["job_id"] for f in recorder.of("job_enqueued")] == [j.id for j in [*jobs, keyed]]
    assert set(threads) == {threading.get_ident()}
    assert [client.get(j.id).state for j in jobs] == [JobState.QUEUED] * 5
    assert client.get(jobs[0].id).data == {"n": 0}


@pytest.mark.parametrize("ran", [True, False], ids=["reply lost", "not sent"])
def test_after_a_lost_connection_the_same_jobs_are_stored_once(
    client: BlockingClient, monkeypatch: pytest.MonkeyPatch, ran: bool
) -> None:
    recorder = Recorder(client.app)
    _break_sends(client, monkeypatch, run=ran)
    calls = _loop_calls(client, monkeypatch)
    job = client.enqueue("t", {"n": 1})
    assert calls == ["RedisBackend.enqueue"]  # the same jobs, through the retrying path
    assert [f["job_id"] for f in recorder.of("job_enqueued")] == [job.id]
    client.enqueue("t", {"n": 2})
    assert calls == ["RedisBackend.enqueue"]  # the next one is sent directly again
    assert client.get(job.id).data == {"n": 1}
    counts = client.run(client.app.backend.counts())
    assert counts == {"default": {"queued": 3}}  # the first job, this one once, the next


def test_threads_enqueue_at_once(client: BlockingClient) -> None:
    """The client is shared by a web server's threads: each job is stored once, with one
    event."""
    recorder = Recorder(client.app)
    made: list[str] = []

    def producer(n: int) -> None:
        made.extend(client.enqueue("t", {"thread": n, "i": i}).id for i in range(50))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 200
    assert sorted(f["job_id"] for f in recorder.of("job_enqueued")) == sorted(made)
    assert client.run(client.app.backend.counts()) == {"default": {"queued": 201}}
