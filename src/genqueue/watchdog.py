"""Detects an event loop that a task blocks (an ``async def`` task calling blocking code).

Such a task cannot be timed out (``asyncio.timeout`` needs the loop to run) and stalls
every other job of the worker, heartbeats included. A watchdog thread pings the loop;
when a ping goes unanswered for longer than the threshold it reports, while the loop is
still blocked, the name of the asyncio task that holds the loop (``on_blocked``, called in
the watchdog thread, returns what to report later). Once the loop answers again,
``on_unblocked`` runs in the loop with that report and how long the loop was blocked.
A worker reports with ``BlockedLoopReport``: a warning on ``genqueue.worker`` naming the
job at once, then a ``loop_blocked`` event with how long it lasted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from genqueue.events import EventName, Events
from genqueue.running import JOB_TASK_PREFIX, RunningJob

log = logging.getLogger("genqueue.worker")


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


class BlockedLoopReport:
    """What a worker says about its blocked loop: which job (task) held it, how long."""

    def __init__(
        self,
        running: Mapping[str, RunningJob],
        events: Events,
        worker_id: str,
        stats: Counter[str],
    ) -> None:
        self._running = running
        self._events = events
        self._worker_id = worker_id
        self._stats = stats

    def blocked(self, holder: str | None, seconds: float) -> dict[str, Any]:
        """In the watchdog thread, while the loop is blocked: name the job now."""
        fields: dict[str, Any] = {"job_id": None, "task": None, "holder": holder}
        running = None
        if holder is not None and holder.startswith(JOB_TASK_PREFIX):
            running = self._running.get(holder.removeprefix(JOB_TASK_PREFIX))
        if running is None:
            log.warning(
                "event loop blocked for %.1f s so far by %s",
                seconds,
                holder or "code outside any asyncio task",
                extra={"holder": holder},
            )
            return fields
        job = running.job
        fields.update(job_id=job.id, task=job.task)
        log.warning(
            "event loop blocked for %.1f s so far by job %s (task %s): an async task must "
            "not call blocking code (make it a def task, or use asyncio.to_thread)",
            seconds,
            job.id,
            job.task,
            extra={"job_id": job.id, "task": job.task},
        )
        return fields

    def unblocked(self, fields: dict[str, Any], seconds: float) -> None:
        """In the loop, once it runs again."""
        self._stats["loop_blocked"] += 1
        self._events.emit(
            EventName.LOOP_BLOCKED, **fields, worker=self._worker_id, seconds=round(seconds, 3)
        )


def watch_loop(
    loop: asyncio.AbstractEventLoop, threshold: float | None, report: BlockedLoopReport
) -> LoopWatchdog | None:
    """Start a watchdog on ``loop`` (None when ``threshold`` is None: watching is off)."""
    if threshold is None:
        return None
    watchdog = LoopWatchdog(loop, threshold, report.blocked, report.unblocked)
    watchdog.start()
    return watchdog
