"""What is particular to the PostgreSQL backend: URLs, migrations, the server clock,
SKIP LOCKED claims, LISTEN/NOTIFY wake-ups and riding out lost connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from genqueue import App, BackendError, ConfigError, FakeClock, StorageCorrupt
from genqueue.backends import create_backend
from genqueue.backends.postgres import PostgresBackend, PostgresOptions
from genqueue.backends.postgres import schema as pg_schema
from genqueue.clock import OffsetClock
from genqueue.job import Job
from tests.postgres_server import postgres_url_for_test, require_postgres

pytestmark = pytest.mark.postgres


async def server_now() -> float:
    async with await psycopg.AsyncConnection.connect(require_postgres()) as conn:
        cur = await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        row = await cur.fetchone()
        assert row is not None
        return float(row[0])


def test_url_options_are_genqueues_or_libpqs() -> None:
    options = PostgresOptions.from_url(
        "postgresql://u:secret@db.example:5433/jobs?schema=app_jobs&pool_max=3"
        "&sslmode=disable&application_name=me"
    )
    assert (options.schema, options.pool_max, options.pool_min) == ("app_jobs", 3, 1)
    assert "schema" not in options.conninfo and "pool_max" not in options.conninfo
    assert "sslmode=disable" in options.conninfo and "application_name=me" in options.conninfo
    assert PostgresOptions.from_url("postgres://h/db").schema == "genqueue"
    backend = create_backend("postgres://u:secret@h/db?schema=x", clock=None)
    assert isinstance(backend, PostgresBackend) and "secret" not in repr(backend)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("bogus=1", "invalid PostgreSQL URL"),
        ("schema=Bad-Name", "invalid schema"),
        ("schema=" + "x" * 49, "invalid schema"),
        ("pool_max=many", "invalid option"),
        ("pool_min=5&pool_max=2", "pool_min"),
    ],
)
def test_bad_url_options_are_refused_at_once(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PostgresOptions.from_url(f"postgresql://u:secret@h/db?{query}")


def test_migrations_are_numbered() -> None:
    found = pg_schema.migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    assert found[0][1] == "init"


async def _schema_of(url: str) -> list[tuple[str, ...]]:
    name = PostgresOptions.from_url(url).schema
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        found = await pg_schema.schema_of(conn, name)
    return [tuple(part.replace(name, "SCHEMA") for part in row) for row in found]


async def test_migrating_step_by_step_equals_a_fresh_schema() -> None:
    fresh, stepped = postgres_url_for_test("a"), postgres_url_for_test("b")
    async with App(fresh):
        pass
    stepped_name = PostgresOptions.from_url(stepped).schema
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        for target in range(1, len(pg_schema.migrations()) + 1):
            assert await pg_schema.migrate(conn, stepped_name, target) == target
    async with App(stepped):
        pass
    assert await _schema_of(stepped) == await _schema_of(fresh)
    assert len(await _schema_of(fresh)) > 40


async def test_concurrent_first_open_migrates_once() -> None:
    url = postgres_url_for_test("c")
    backends = [create_backend(url) for _ in range(6)]
    await asyncio.gather(*(b.open() for b in backends))  # each its own pool: truly concurrent
    try:
        async with backends[0].db.pool.connection() as conn:  # type: ignore[attr-defined]
            s = pg_schema.quoted(PostgresOptions.from_url(url).schema)
            cur = await conn.execute(
                f"SELECT version, count(*) FROM {s}.genqueue_migrations GROUP BY 1"
            )
            rows = await cur.fetchall()
        assert sorted(rows) == [(v, 1) for v, _, _ in pg_schema.migrations()]
    finally:
        await asyncio.gather(*(b.close() for b in backends))


async def test_a_schema_from_a_newer_genqueue_is_refused(pg_url: str) -> None:
    async with App(pg_url):
        pass
    s = pg_schema.quoted(PostgresOptions.from_url(pg_url).schema)
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {s}.genqueue_migrations (version, name) VALUES (99, 'future')"
        )
    with pytest.raises(ConfigError, match="newer genqueue"):
        async with App(pg_url):
            pass


async def test_integrity_check_finds_a_missing_table(pg_app: App) -> None:
    await pg_app.backend.check_integrity()
    s = pg_schema.quoted(pg_app.backend.schema)  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        await conn.execute(f"DROP TABLE {s}.slots")
    pg_app.backend._checked = False  # type: ignore[attr-defined]
    with pytest.raises(StorageCorrupt, match=r"tables \['slots'\] are missing"):
        await pg_app.backend.check_integrity()


@pytest.mark.parametrize("skew", [300.0, -300.0])
async def test_time_and_leases_follow_the_servers_clock(pg_url: str, skew: float) -> None:
    async with App(pg_url, clock=OffsetClock(skew)) as app:
        assert app.backend.capabilities.server_time
        assert abs(await app.backend.time() - await server_now()) < 0.5
        app.task("t")(_noop)
        job = await app.enqueue("t", {})
        assert abs(job.created_at - await server_now()) < 0.5
        [claimed] = await app.backend.fetch(["default"], "w", 10, 30)
        assert claimed.lease_expires_at is not None
        assert abs(claimed.lease_expires_at - 30 - await server_now()) < 0.5


async def test_a_fake_clock_stands_in_for_the_server(pg_url: str) -> None:
    clock = FakeClock()
    async with App(pg_url, clock=clock) as app:
        assert not app.backend.capabilities.server_time
        assert await app.backend.time() == clock.now()
        app.task("t")(_noop)
        await app.enqueue("t", {}, delay=10)
        assert await app.backend.fetch(["default"], "w", 10, 30) == []
        clock.advance(10)
        [claimed] = await app.backend.fetch(["default"], "w", 10, 30)
        assert claimed.started_at == clock.now() and claimed.lease_expires_at == clock.now() + 30


async def test_concurrent_fetchers_never_claim_a_job_twice(pg_url: str) -> None:
    clock = FakeClock()
    now = clock.now()
    backends = [create_backend(pg_url, clock=clock) for _ in range(4)]
    for b in backends:
        await b.open()
    try:
        jobs = [
            Job(id=f"{i:032x}", task="t", queue="q", created_at=now, run_at=now) for i in range(300)
        ]
        await backends[0].enqueue(jobs)

        async def drain(backend: Any, worker: str) -> list[str]:
            got: list[str] = []
            while batch := await backend.fetch(["q"], worker, 7, 30):
                got += [j.id for j in batch]
            return got

        claimed = await asyncio.gather(*(drain(b, f"w{i}") for i, b in enumerate(backends)))
        every = [job_id for got in claimed for job_id in got]
        assert sorted(every) == sorted(j.id for j in jobs)  # each exactly once
        assert sum(1 for got in claimed if got) >= 2  # they really ran side by side
    finally:
        for b in backends:
            await b.close()


async def test_waiting_falls_back_to_polling_and_listens_again(pg_app: App) -> None:
    backend: Any = pg_app.backend
    pg_app.task("t")(_noop)
    waiter = asyncio.create_task(backend.wait_for_work(["default"], 60))
    await _until(lambda: backend.listener.listening)
    pid = backend.listener._conn.info.backend_pid
    await _terminate(pid)
    # Whatever the listener sees meanwhile, a wait ends by its timeout at the latest.
    started = time.monotonic()
    await backend.wait_for_work(["default"], 0.2)
    assert time.monotonic() - started < 5
    await _until(
        lambda: backend.listener.listening and backend.listener._conn.info.backend_pid != pid
    )
    waiter.cancel()
    again = asyncio.create_task(backend.wait_for_work(["default"], 60))
    await asyncio.sleep(0.2)
    assert not again.done()
    await pg_app.enqueue("t", {})
    await asyncio.wait_for(again, 10)


async def test_jobs_made_ready_before_listening_wake_the_first_wait(pg_app: App) -> None:
    """Their NOTIFY went to nobody: the listener looks for them once it listens."""
    pg_app.task("t")(_noop)
    await pg_app.enqueue("t", {})
    assert not pg_app.backend.listener.listening  # type: ignore[attr-defined]
    await asyncio.wait_for(pg_app.backend.wait_for_work(["default"], 60), 10)
    other = asyncio.create_task(pg_app.backend.wait_for_work(["other"], 60))
    await asyncio.sleep(0.3)
    assert not other.done()  # a queue with nothing queued is not woken by it
    other.cancel()


async def test_calls_ride_out_killed_connections(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_url + "&application_name=gq_ride_out"
    async with App(url, clock=FakeClock()) as app:
        app.task("t")(_noop)
        await app.enqueue("t", {})
        async with await psycopg.AsyncConnection.connect(
            require_postgres(), autocommit=True
        ) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'gq_ride_out' AND pid <> pg_backend_pid()"
            )
        assert (await app.backend.counts()) == {"default": {"queued": 1}}
        [job] = await app.backend.fetch(["default"], "w", 10, 30)
        assert job.attempts == 1
    # The killed connections were met: retried by the call, or found dead and replaced by
    # the pool first (which one depends on timing; both must be survived).
    assert "PostgreSQL call counts failed" in caplog.text or "closed connection" in caplog.text


async def test_an_unreachable_server_fails_cleanly() -> None:
    url = "postgresql://postgres@127.0.0.1:1/test?pool_timeout=1&connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect to PostgreSQL"):
        async with App(url):
            pass
    assert time.monotonic() - started < 10


async def _noop(ctx: Any) -> None:
    return None


async def _terminate(pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_move_racing_for_an_idempotency_key_fails_alone(
    pg_app: App, user_conn: Any
) -> None:
    """A redrive re-takes its key while another transaction, not yet committed, enqueues a
    job with the same key: the redrive waits for it, then is refused (False), and the
    other moves of the batch still apply."""
    from dataclasses import replace as changed

    from genqueue import ClassifiedError, ErrorKind
    from genqueue.backends.base import Move
    from genqueue.entry import DeadLetter
    from genqueue.job import JobState

    pg_app.task("t")(_noop)
    backend = pg_app.backend
    keyed = await pg_app.enqueue("t", {"n": 1}, idempotency_key="k")
    other = await pg_app.enqueue("t", {"n": 2})
    now = await backend.time()
    error = ClassifiedError(kind=ErrorKind.AUTH, retryable=False, message="no", type="E")
    for job in await backend.fetch(["default"], "w", 10, 30):
        dead = changed(job, state=JobState.DEAD, last_error=error, finished_at=now)
        entry = DeadLetter(dead, "test", ErrorKind.AUTH, now, error.fingerprint, now + 3600)
        assert await backend.move([Move(dead, JobState.ACTIVE, job.attempts, entry)]) == [True]
    async with user_conn.transaction():
        await pg_app.enqueue("t", {"n": 3}, idempotency_key="k", connection=user_conn)
        stored = {j.id: j for j in (await pg_app.list_jobs()).items}
        moves = [
            Move(changed(stored[i], state=JobState.QUEUED), JobState.DEAD, 1)
            for i in (keyed.id, other.id)
        ]
        racing = asyncio.create_task(backend.move(moves))
        await asyncio.sleep(0.5)
        assert not racing.done()  # waiting on the uncommitted key
    assert await asyncio.wait_for(racing, 10) == [False, True]
    assert (await pg_app.get(keyed.id)).state is JobState.DEAD
    assert await pg_app.dlq.get(keyed.id)  # its entry is still there
    assert (await pg_app.get(other.id)).state is JobState.QUEUED
    assert await backend.dlq_get(other.id) is None  # redriven: entry removed with the move


@pytest.mark.parametrize("jobs", [1, 2])
async def test_a_move_whose_commit_reply_was_lost_is_reported_applied_when_sent_again(
    pg_app: App, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A move commits but its connection fails before the reply reaches the worker; the
    retry finds each job as the move left it and reports it applied (the worker then
    announces the outcome instead of calling it discarded), without applying it twice."""
    from contextlib import asynccontextmanager

    from tests.conformance.helpers import completing

    pg_app.task("t")(_noop)
    backend: Any = pg_app.backend
    for n in range(jobs):
        await pg_app.enqueue("t", {"n": n})
    claimed = await backend.fetch(["default"], "w", jobs, 30)
    now = await backend.time()
    moves = completing(claimed, now)
    pool = backend.db.pool
    lost: list[bool] = []

    @asynccontextmanager
    async def losing_the_first_reply() -> Any:
        async with pool.__class__.connection(pool) as conn:
            yield conn
        if not lost:  # the transaction inside has committed
            lost.append(True)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pool, "connection", losing_the_first_reply)
    assert await backend.move(moves) == [True] * jobs
    assert lost
    assert await backend.counts() == {"default": {"completed": jobs}}
    # Sent afresh (not a retry), the same move is refused as before.
    assert await backend.move(moves[:1]) == [False]
