"""Transactional enqueue: a job written in the caller's own transaction exists if and only
if that transaction commits."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from genqueue import App, ConfigError, FakeClock, IdempotencyConflict, JobNotFound, JobState
from tests.conftest import drain

pytestmark = pytest.mark.postgres

Conn = psycopg.AsyncConnection[Any]


def register(app: App, ran: list[str]) -> None:
    @app.task("orders.confirm")
    async def confirm(ctx: Any) -> dict[str, Any]:
        ran.append(ctx.id)
        return {"order": ctx.data["order"]}


async def make_orders_table(conn: Conn, schema: str) -> None:
    async with conn.transaction():
        await conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY)')  # type: ignore[arg-type]


async def test_committed_job_exists_and_runs(pg_app: App, user_conn: Conn) -> None:
    ran: list[str] = []
    register(pg_app, ran)
    schema = pg_app.backend.schema  # type: ignore[attr-defined]
    await make_orders_table(user_conn, schema)

    async with user_conn.transaction():
        await user_conn.execute(f'INSERT INTO "{schema}".orders VALUES (42)')  # type: ignore[arg-type]
        job = await pg_app.enqueue(
            "orders.confirm", {"order": 42}, idempotency_key="order-42", connection=user_conn
        )
        # Not committed yet: nobody else sees it, and no worker can take it.
        assert await pg_app.backend.counts() == {}
        assert await pg_app.backend.fetch(["default"], "w", 10, 30) == []
    stored = await pg_app.get(job.id)
    assert stored.state is JobState.QUEUED and stored.data == {"order": 42}
    # The same key with the same data now returns the committed job.
    again = await pg_app.enqueue("orders.confirm", {"order": 42}, idempotency_key="order-42")
    assert again.id == job.id
    await drain(pg_app)
    assert ran == [job.id]
    assert (await pg_app.get(job.id)).result == {"order": 42}


async def test_rolled_back_job_never_existed(pg_app: App, user_conn: Conn) -> None:
    ran: list[str] = []
    register(pg_app, ran)
    schema = pg_app.backend.schema  # type: ignore[attr-defined]
    await make_orders_table(user_conn, schema)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with user_conn.transaction():
            await user_conn.execute(f'INSERT INTO "{schema}".orders VALUES (7)')  # type: ignore[arg-type]
            job = await pg_app.enqueue(
                "orders.confirm", {"order": 7}, idempotency_key="order-7", connection=user_conn
            )
            raise Abort

    with pytest.raises(JobNotFound):
        await pg_app.get(job.id)
    assert await pg_app.backend.counts() == {}
    assert (await pg_app.list_jobs()).items == []
    # The key was never held: other data under it is accepted, not a conflict.
    other = await pg_app.enqueue("orders.confirm", {"order": 8}, idempotency_key="order-7")
    assert other.id != job.id
    await drain(pg_app)
    assert ran == [other.id]


async def test_implicit_transaction_of_a_plain_connection(pg_app: App, user_conn: Conn) -> None:
    """psycopg's default (not autocommit): the job is part of the transaction the
    connection opened implicitly, and goes with its commit or rollback."""
    register(pg_app, [])
    await user_conn.execute("SELECT 1")  # the implicit transaction has begun
    lost = await pg_app.enqueue("orders.confirm", {"order": 1}, connection=user_conn)
    await user_conn.rollback()
    kept = await pg_app.enqueue("orders.confirm", {"order": 2}, connection=user_conn)
    await user_conn.commit()
    assert {j.id for j in (await pg_app.list_jobs()).items} == {kept.id}
    with pytest.raises(JobNotFound):
        await pg_app.get(lost.id)


async def test_a_conflict_undoes_only_the_enqueue(pg_app: App, user_conn: Conn) -> None:
    """An idempotency conflict rolls back what enqueue wrote (a savepoint), not the
    caller's transaction, which can go on and commit."""
    register(pg_app, [])
    schema = pg_app.backend.schema  # type: ignore[attr-defined]
    await make_orders_table(user_conn, schema)
    held = await pg_app.enqueue("orders.confirm", {"order": 1}, idempotency_key="k")
    async with user_conn.transaction():
        await user_conn.execute(f'INSERT INTO "{schema}".orders VALUES (1)')  # type: ignore[arg-type]
        with pytest.raises(IdempotencyConflict):
            await pg_app.queue.enqueue_many(
                [
                    _request({"order": 5}, key="fresh"),
                    _request({"order": 2}, key="k"),  # other data under a held key
                ],
                connection=user_conn,
            )
        cur = await user_conn.execute(f'SELECT count(*) FROM "{schema}".orders')  # type: ignore[arg-type]
        assert await cur.fetchone() == (1,)
    jobs = (await pg_app.list_jobs()).items
    assert [j.id for j in jobs] == [held.id]  # nothing of the refused batch was stored


async def test_commit_wakes_a_waiting_worker(pg_app: App, user_conn: Conn) -> None:
    register(pg_app, [])
    waiter = asyncio.create_task(pg_app.backend.wait_for_work(["default"], 60))
    await asyncio.sleep(0.3)  # listening by now
    async with user_conn.transaction():
        await pg_app.enqueue("orders.confirm", {"order": 3}, connection=user_conn)
        await asyncio.sleep(0.2)
        assert not waiter.done()  # the notification waits for the commit
    await asyncio.wait_for(waiter, 10)


async def test_a_connection_that_is_not_psycopg_async_is_refused(pg_app: App) -> None:
    register(pg_app, [])
    conninfo = pg_app.backend.options.conninfo  # type: ignore[attr-defined]
    with psycopg.connect(conninfo) as sync_conn, pytest.raises(ConfigError, match="Async"):
        await pg_app.enqueue("orders.confirm", {"order": 1}, connection=sync_conn)
    with pytest.raises(ConfigError, match="AsyncConnection"):
        await pg_app.enqueue("orders.confirm", {"order": 1}, connection=object())
    assert await pg_app.backend.counts() == {}


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_other_backends_refuse_a_connection(url: str, tmp_path: Any, user_conn: Conn) -> None:
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with App(url, clock=FakeClock()) as app:
        register(app, [])
        with pytest.raises(ConfigError, match="needs the PostgreSQL backend"):
            await app.enqueue("orders.confirm", {"order": 1}, connection=user_conn)
        assert await app.backend.counts() == {}


def test_the_blocking_client_refuses_a_connection(tmp_path: Any) -> None:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}")
    register(app, [])
    with app.blocking() as client, pytest.raises(ConfigError, match="async API"):
        client.enqueue("orders.confirm", {"order": 1}, connection=object())


def _request(data: dict[str, Any], key: str) -> Any:
    from genqueue import JobRequest

    return JobRequest(task="orders.confirm", data=data, idempotency_key=key)
