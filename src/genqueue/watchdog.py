"""Detects an event loop that a task blocks (an ``async def`` task calling blocking code).

Such a task cannot be timed out (``asyncio.timeout`` needs the loop to run) and stalls
every other job of the worker, heartbeats included. A watchdog thread pings the loop;
when a ping goes unanswered for longer than the threshold it reports, while the loop is
still blocked, the name of the asyncio task that holds the loop (``on_blocked``, called in
the watchdog thread, returns what to report later). Once the loop answers again,
``on_unblocked`` runs in the loop with that report and how long the loop was blocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any


class LoopWatchdog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float,
        on_blocked: Callable[[str | None, float], dict[str, Any]],
        on_unblocked: Callable[[dict[str, Any], float], None],
    ) -> None:
        self._loop = loop
        self._threshold = threshold
        self._on_blocked = on_blocked
        self._on_unblocked = on_unblocked
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: When the unanswered ping was sent (None: no ping outstanding).
        self._ping: float | None = None
        #: What ``on_blocked`` said, once the outstanding ping was reported late.
        self._report: dict[str, Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="genqueue-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        interval = self._threshold / 4
        while not self._stopped.wait(interval):
            if not self._check():
                return

    def _check(self) -> bool:
        """One round in the watchdog thread; False once the loop is gone."""
        now = time.monotonic()
        with self._lock:
            sent = self._ping
            if sent is None:
                self._ping = now
        if sent is None:
            try:
                self._loop.call_soon_threadsafe(self._pong, now)
            except RuntimeError:  # the loop is closed
                return False
            return True
        if self._report is not None or now - sent <= self._threshold:
            return True
        report = self._on_blocked(_running_task_name(self._loop), now - sent)
        with self._lock:
            if self._ping == sent:  # else answered meanwhile: reported, but no event
                self._report = report
        return True

    def _pong(self, sent: float) -> None:
        """The loop answered the ping sent at ``sent``."""
        with self._lock:
            report = self._report
            self._ping, self._report = None, None
        if report is not None:
            self._on_unblocked(report, time.monotonic() - sent)


def _running_task_name(loop: asyncio.AbstractEventLoop) -> str | None:
    """The name of the task the loop is running now (read from another thread)."""
    try:
        task = asyncio.current_task(loop)
    except RuntimeError:
        return None
    return None if task is None else task.get_name()
