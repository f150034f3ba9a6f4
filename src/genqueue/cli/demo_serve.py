"""``genqueue demo --serve``: the dashboard of the demo's backend, live while the demo runs.

The server runs in a thread of its own (its own event loop and its own ``App`` on the
same backend URL), so the demo's workers and progress bar are untouched, and it stays up
after the summary until Ctrl-C. It binds 127.0.0.1 only. Logging in takes the admin
token: ``GENQUEUE_ADMIN_TOKEN`` if set, else one made up for this run and printed (the
terminal is the only place it appears).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from genqueue.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    import uvicorn

HOST = "127.0.0.1"
#: How long the server may take to start before the demo gives up on it.
START_TIMEOUT = 15.0


class DemoDashboard:
    """``genqueue serve`` without workers, in a thread, on one backend URL."""

    def __init__(self, url: str, port: int) -> None:
        if url.startswith("memory:"):
            raise ConfigError(
                "--serve needs a backend the server can share: memory:// lives in one "
                "process; use the default SQLite file or a redis:// URL"
            )
        self.url = url
        self.port = port
        self.token = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind, start serving, and return the login address."""
        try:
            import uvicorn

            from genqueue.app import App
            from genqueue.service.app import create_app
            from genqueue.service.settings import ServiceSettings
        except ImportError as exc:
            raise MissingExtra(exc.name or "fastapi", "service") from None
        settings = ServiceSettings.from_env(host=HOST, port=self.port, workers=False)
        if settings.admin_token is None:
            settings = replace(settings, admin_token=secrets.token_urlsafe(18))
        self.token = str(settings.admin_token)
        sock = _bind(self.port)
        asgi = create_app(App(self.url), settings)
        config = uvicorn.Config(asgi, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="genqueue-demo-serve"
        )
        self._thread.daemon = True  # never keeps the process alive on its own
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the dashboard server did not start (see the log above)")
            time.sleep(0.02)
        return f"http://{HOST}:{sock.getsockname()[1]}/login"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve the dashboard on {HOST}:{port} ({exc.strerror}); "
            "pick another port with --port"
        ) from None
    return sock


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT)."""
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
