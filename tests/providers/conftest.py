"""Fixtures: a fake PixelLab server per test, a client pointed at it, an app using it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import BACKENDS

from genqueue import App
from genqueue.providers.fake_pixellab import FakeOptions, FakePixelLab
from genqueue.providers.pixellab import PixelLab
from genqueue.providers.pixellab.client import PixelLabClient

KEY = "sk-canary-7d1f0a9c3b5e"
SHARED_BACKENDS = [b for b in BACKENDS if b in ("sqlite", "redis")]


MakeFake = Callable[..., FakePixelLab]


@pytest.fixture
def make_fake() -> Iterator[MakeFake]:
    """Start fake servers with any options (each stopped after the test)."""
    fakes: list[FakePixelLab] = []

    def make(**options: Any) -> FakePixelLab:
        options.setdefault("tokens", {KEY: "main"})
        server = FakePixelLab(FakeOptions(**options)).start()
        fakes.append(server)
        return server

    yield make
    for server in fakes:
        server.stop()


@pytest.fixture
def fake() -> Iterator[FakePixelLab]:
    server = FakePixelLab(FakeOptions(tokens={KEY: "main"}, complete_after_polls=2))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(fake: FakePixelLab) -> AsyncIterator[PixelLabClient]:
    pixellab = PixelLabClient(KEY, base_url=fake.base_url)
    try:
        yield pixellab
    finally:
        await pixellab.aclose()


@pytest.fixture(params=SHARED_BACKENDS)
async def setup(
    request: pytest.FixtureRequest, fake: FakePixelLab, tmp_path: Path
) -> AsyncIterator[tuple[App, PixelLab]]:
    """The task on every shared backend: the guards live in the backend's shared state."""
    from tests.providers.pixellab_helpers import pixellab_app

    async with pixellab_app(fake, tmp_path, backend=request.param) as pair:
        yield pair
