"""The blocking client offers every operation of the asyncio API, with the same parameters."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from genqueue import App, DeadLetterQueue, DLQFilter, ErrorKind, JobRequest, JobState
from genqueue.blocking import BlockingClient
from genqueue.queue import Queue
from tests.conformance.helpers import make_dead

#: Async methods of App the client does not mirror: it opens the app when it is made and
#: closes it in close() (or on leaving its ``with`` block).
LIFECYCLE = {"open", "close"}


def async_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """The public coroutine and async-generator methods of ``cls``."""
    return {
        name: fn
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))
    }


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self"
    ]


def blocking_name(owner: type, name: str) -> str:
    if owner is DeadLetterQueue:
        return f"dlq_{name}"
    return "list_jobs" if (owner, name) == (Queue, "list") else name


def test_the_async_surface_is_what_this_test_expects() -> None:
    # If this fails, the enumeration below missed the methods it is meant to check.
    assert {"expire", "purge", "stats", "export", "iterate"} <= set(async_methods(DeadLetterQueue))
    assert {"enqueue_many", "list", "wait"} <= set(async_methods(Queue))
    assert {"enqueue", "list_jobs", "open"} <= set(async_methods(App))


@pytest.mark.parametrize("owner", [DeadLetterQueue, Queue])
def test_every_async_operation_has_a_blocking_twin(owner: type) -> None:
    for name, fn in async_methods(owner).items():
        twin = getattr(BlockingClient, blocking_name(owner, name), None)
        assert twin is not None, f"BlockingClient has no {blocking_name(owner, name)}"
        assert not inspect.iscoroutinefunction(twin)
        assert parameters(twin) == parameters(fn), f"{owner.__name__}.{name} differs"


def test_every_app_shortcut_has_a_blocking_twin() -> None:
    for name in set(async_methods(App)) - LIFECYCLE:
        assert callable(getattr(BlockingClient, name, None)), f"BlockingClient has no {name}"


def test_blocking_client_runs_dlq_operations(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'blocking.db'}")
    with app.blocking() as client:
        ids = client.run(make_dead(app, 3, kind=ErrorKind.AUTH))
        client.run(make_dead(app, 2, kind=ErrorKind.SERVER, offset=10))
        assert client.dlq_count() == 5
        assert client.dlq_stats().by_kind == {"auth": 3, "server": 2}
        assert [e.job_id for e in client.dlq_iterate(DLQFilter(error_kind="auth"))] == ids[::-1]
        assert len(client.dlq_list(limit=2).items) == 2
        out = io.StringIO()
        assert client.dlq_export(out, format="csv") == 5 and out.getvalue().count("\n") == 6
        report = client.dlq_redrive_many(filter=DLQFilter(error_kind="server"), dry_run=True)
        assert report.matched == 2 and report.dry_run
        assert client.dlq_delete_many(ids[:2]) == ids[:2]
        assert client.dlq_purge(DLQFilter(error_kind="auth")) == 1
        assert client.dlq_expire() == 0
        assert client.dlq_count() == 2
        job = client.enqueue_many([JobRequest("t", {"x": 1})])[0]
        assert [j.id for j in client.list_jobs(state=JobState.QUEUED).items] == [job.id]


def test_stopping_an_iteration_early_closes_it(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'blocking.db'}")
    with app.blocking() as client:
        client.run(make_dead(app, 3))
        entries = client.dlq_iterate()
        first = next(entries)
        entries.close()
        assert client.dlq_get(first.job_id).job_id == first.job_id
