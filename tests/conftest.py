"""Fixtures shared by every test: a fake clock, backends by URL, an app and a worker runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from genqueue import App, FakeClock, RetryPolicy, Worker, WorkerSettings
from genqueue.backends import Backend, create_backend

# Hypothesis profiles (the model test, tests/model). The default is small and derandomized,
# so every run (CI included) explores the same sequences; `pytest --hypothesis-profile=deep`
# explores many more and longer ones, and keeps failures in .hypothesis/ to replay them.
_MODEL = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile(
    "genqueue", max_examples=40, stateful_step_count=50, derandomize=True, database=None, **_MODEL
)
settings.register_profile("deep", max_examples=600, stateful_step_count=80, **_MODEL)
settings.load_profile("genqueue")


class FixedRandom:
    """A random source that always returns the same point of the interval."""

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


# Redis joins the default run when redis-server is installed (and under CI, where a
# missing redis-server must fail rather than skip). A local Redis Cluster (three masters,
# tests/redis_cluster.py) needs redis-cli as well.
_WITH_REDIS = bool(shutil.which("redis-server") or os.environ.get("CI"))
_WITH_CLUSTER = _WITH_REDIS and bool(shutil.which("redis-cli") or os.environ.get("CI"))
_DEFAULT_BACKENDS = "memory,sqlite,redis" if _WITH_REDIS else "memory,sqlite"
_CHOSEN = os.environ.get("GENQUEUE_TEST_BACKENDS")
BACKENDS = [b for b in (_CHOSEN or _DEFAULT_BACKENDS).split(",") if b]
# The conformance suite and the model test run on PostgreSQL too (the machine's server,
# tests/postgres_server.py: skipped with a reason when it is unreachable, failed under CI)
# and on a local Redis Cluster (tests/redis_cluster.py). Other suites keep BACKENDS: a
# cluster changes nothing above the backend. GENQUEUE_TEST_BACKENDS, when set, picks for
# both.
_MORE = ["postgres", *(["redis-cluster"] if _WITH_CLUSTER else [])]
CONFORMANCE_BACKENDS = BACKENDS if _CHOSEN else [*BACKENDS, *_MORE]


def backend_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'genqueue.db'}"
    if kind == "redis":
        from tests.redis_server import redis_url_for_test

        return redis_url_for_test()
    if kind == "redis-cluster":
        from tests.redis_cluster import cluster_url_for_test

        return cluster_url_for_test()
    if kind == "postgres":
        from tests.postgres_server import postgres_url_for_test

        return postgres_url_for_test()
    raise ValueError(kind)


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path, clock: FakeClock) -> Callable[[], Backend]:
    def make() -> Backend:
        return create_backend(backend_url(backend_kind, tmp_path), clock=clock)

    return make


@pytest.fixture
async def app(make_backend: Callable[[], Backend], clock: FakeClock) -> AsyncIterator[App]:
    application = App(make_backend(), clock=clock, retry=RetryPolicy(random=FixedRandom(0.5)))
    async with application:
        yield application


FAST = WorkerSettings(
    concurrency=4, lease_seconds=30, poll_interval=0.01, shutdown_grace=1, sweep_interval=3600
)


async def drain(app: App, **settings: Any) -> Worker:
    """Run a burst worker until nothing is running or due."""
    options = {**vars(FAST), **settings}
    worker = Worker(app, burst=True, settings=WorkerSettings(**options))
    await worker.run()
    return worker
