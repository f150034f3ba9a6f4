"""The public handle of the fake PixelLab server: :class:`FakePixelLab` and :func:`serve`.

Owns: starting the HTTP server on a daemon thread (loopback, ephemeral port by default),
stopping it quickly even while requests hang, and the Python control API that mirrors
``/_fake/*`` (faults, stats, tokens, balance, clock, forced job states, reset).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from genqueue.providers.fake_pixellab.app import FakeApp
from genqueue.providers.fake_pixellab.control import Control
from genqueue.providers.fake_pixellab.faults import Fault, FaultRule
from genqueue.providers.fake_pixellab.jobs import Outcome
from genqueue.providers.fake_pixellab.options import FakeOptions
from genqueue.providers.fake_pixellab.server import FakeHTTPServer

DEFAULT_PORT = 8765


class FakePixelLab:
    """A local, in-process PixelLab API (see the package docstring for the behaviour)."""

    def __init__(
        self,
        options: FakeOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not _is_loopback(host):
            raise ValueError("the fake PixelLab server only listens on loopback addresses")
        self.options = options or FakeOptions()
        self.app = FakeApp(self.options)
        self._control = Control(self.app)
        self._address = (host, port)
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the fake PixelLab server was already started")
        httpd = FakeHTTPServer(self._address, self.app, self._control, self.options.access_log)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-pixellab:{self.port}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving: wake hanging/delayed requests, close connections, join the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout)
        # A later start() serves again on the same port, with the same state (an outage
        # that clients see as refused connections).
        self._address = (self._address[0], int(httpd.server_address[1]))
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        if self._address[1]:
            return int(self._address[1])  # stopped; start() serves here again
        raise RuntimeError("start() the fake first")

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (control routes live under ``/_fake``)."""
        host = self._address[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def base_url(self) -> str:
        """The v2 API base, ``http://127.0.0.1:PORT/v2``."""
        return self.root_url + "/v2"

    @property
    def v1_url(self) -> str:
        """The legacy v1 API base, ``http://127.0.0.1:PORT/v1``."""
        return self.root_url + "/v1"

    # -- faults --------------------------------------------------------------------------

    def add_fault(
        self,
        rule: FaultRule | str,
        fault: Fault | None = None,
        *,
        nth: int = 1,
        times: int | None = 1,
        token: str | None = None,
        token_label: str | None = None,
        probability: float = 1.0,
        seed: int = 0,
    ) -> str:
        """Install a fault rule; returns its id.

        Either pass a :class:`FaultRule`, or ``match`` (``"POST /v2/create-image-*"``) plus a
        :class:`Fault` and the rule fields. ``token`` (a raw token) is turned into its label
        at once; the rule never stores the token itself.
        """
        if isinstance(rule, str):
            if fault is None:
                raise TypeError("add_fault(match, fault, ...) needs a fault")
            if token is not None:
                token_label = self.app.state.label_for_token(token)
            rule = FaultRule(
                match=rule,
                fault=fault,
                nth=nth,
                times=times,
                token_label=token_label,
                probability=probability,
                seed=seed,
            )
        return self.app.faults.add(rule)

    def remove_fault(self, rule_id: str) -> bool:
        """Remove one rule by id."""
        return self.app.faults.remove(rule_id)

    def clear_faults(self) -> None:
        """Remove every fault rule (including the configured ones, until :meth:`reset`)."""
        self.app.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """The installed rules with their ``seen``/``fired`` counters."""
        return self.app.faults.describe()

    # -- introspection and state ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The same JSON as ``GET /_fake/stats`` (labels only, never tokens)."""
        data: dict[str, Any] = json.loads(json.dumps(self.app.state.snapshot()))
        return data

    def ledger(self) -> list[dict[str, Any]]:
        """The charge ledger (one record per accepted, billed submit)."""
        ledger: list[dict[str, Any]] = self.stats()["ledger"]
        return ledger

    def reset(self) -> None:
        """Back to the configured options: balance, tokens, faults; no jobs, no stats."""
        self.app.reset()

    def add_token(self, token: str, label: str) -> None:
        """Accept another bearer token, reported as ``label``."""
        self.app.state.add_token(token, label)

    def revoke_token(self, token: str) -> None:
        """Make ``token`` answer 401 (KeyError if it was never configured)."""
        self.app.state.set_revoked(self.app.state.label_for_token(token), True)

    def restore_token(self, token: str) -> None:
        """Undo :meth:`revoke_token`."""
        self.app.state.set_revoked(self.app.state.label_for_token(token), False)

    def set_balance(self, usd: float) -> None:
        """Set the shared account balance (USD)."""
        self.app.state.set_balance(usd)

    @property
    def balance(self) -> float:
        """The current balance (USD)."""
        with self.app.state.lock:
            return self.app.state.balance

    def advance_clock(self, seconds: float) -> None:
        """Pretend time passed: job deadlines (``complete_after_seconds``) and TTLs."""
        self.app.state.advance_clock(seconds)

    def fail_job(
        self, job_id: str, detail: str = "Generation failed", *, status: str = "failed"
    ) -> None:
        """Make a job end as ``status`` with ``last_response.detail`` (when it finishes)."""
        self.app.state.force(job_id, Outcome(status, detail))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    options: FakeOptions | None = None,
    *,
    on_ready: Callable[[FakePixelLab], None] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Run a fake in the foreground until Ctrl-C (or until ``stop_event`` is set).

    ``on_ready`` is called once the port is bound (default: a one-line banner on stderr
    showing the URL and the token *labels*).
    """
    fake = FakePixelLab(options, host=host, port=port).start()
    stop = stop_event or threading.Event()
    try:
        (on_ready or _banner)(fake)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


def _banner(fake: FakePixelLab) -> None:
    labels = ", ".join(sorted(fake.options.tokens.values())) or "none"
    sys.stderr.write(
        f"fake PixelLab API on {fake.base_url} (control: {fake.root_url}/_fake/stats; "
        f"token labels: {labels}); Ctrl-C to stop\n"
    )
