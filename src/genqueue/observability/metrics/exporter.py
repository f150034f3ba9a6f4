"""``Metrics``: one registry per app, its event counters, its backend gauges and endpoints.

Wire it once per process (the worker CLI does with ``--metrics-port``)::

    metrics = Metrics(app)
    metrics.install()                  # count this process's events
    metrics.serve(9100)                # /metrics on a background thread
    asyncio.create_task(metrics.run()) # refresh the backend gauges

or mount ``metrics.asgi_app()`` in an ASGI app. Nothing here is a module global: two apps
in one process have two registries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest, make_asgi_app
from prometheus_client.exposition import start_http_server

from genqueue.observability.metrics.instruments import Instruments
from genqueue.observability.metrics.readings import (
    BackendGauges,
    ReadingSource,
    analytics_readings,
    core_readings,
)

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from genqueue.app import App

log = logging.getLogger("genqueue.metrics")


def _version() -> str:
    try:
        return version("genqueue")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


class Metrics:
    """Prometheus metrics of one app."""

    def __init__(
        self,
        app: App,
        *,
        sources: Sequence[ReadingSource] = (),
        refresh_every: float = 5.0,
        worker_stale_after: float = 30.0,
        analytics_window: float = 3600.0,
    ) -> None:
        self.app = app
        self.sources = list(sources)
        self.refresh_every = refresh_every
        self.worker_stale_after = worker_stale_after
        self.analytics_window = analytics_window
        self.registry = CollectorRegistry()
        self.instruments = Instruments(self.registry)
        self.gauges = BackendGauges()
        self.registry.register(self.gauges)
        info = Gauge(
            "genqueue_build_info", "genqueue version.", ("version",), registry=self.registry
        )
        info.labels(_version()).set(1)
        self._unsubscribe: Callable[[], None] | None = None
        self._server: WSGIServer | None = None

    def install(self) -> None:
        """Count this process's events from now on (idempotent)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.app.events.subscribe(
                self.instruments.on_event, self.instruments.names
            )

    def uninstall(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def refresh(self) -> None:
        """Read the backend gauges now."""
        readings = await core_readings(self.app, self.worker_stale_after)
        readings += await analytics_readings(self.app, self.analytics_window)
        for source in self.sources:
            readings += await source(self.app)
        self.gauges.update(readings, time.time())

    async def run(self) -> None:
        """Refresh the gauges every ``refresh_every`` seconds until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # the backend may be down for a while; keep the last readings
                log.warning("reading the backend gauges failed", exc_info=True)
            await asyncio.sleep(self.refresh_every)

    def render(self) -> bytes:
        """The exposition text, as a scrape would get it."""
        return generate_latest(self.registry)

    def asgi_app(self) -> Any:
        """An ASGI app serving the metrics (mount it at ``/metrics``)."""
        return make_asgi_app(registry=self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on a daemon thread; return the bound port (0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        self.uninstall()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
