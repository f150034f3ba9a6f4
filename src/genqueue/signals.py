"""Signals a task raises to steer its own job. They are not failures.

* ``Retry(delay=None)``: run again later; counts as a retry (dead-letters once retries
  are exhausted). Without a delay the retry policy's backoff applies.
* ``Snooze(delay)``: run again after ``delay`` seconds without spending a retry.
* ``Cancel(reason)``: stop; the job ends cancelled.
"""

from __future__ import annotations

import math

from genqueue.errors import InvalidInput


class TaskSignal(Exception):
    """Base of the control signals."""


def _check_delay(delay: float | None, *, required: bool) -> float | None:
    if delay is None:
        if required:
            raise InvalidInput("a delay in seconds is required", field="delay")
        return None
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise InvalidInput("delay must be a finite number of seconds", field="delay")
    if delay < 0:
        raise InvalidInput("delay must not be negative", field="delay")
    return float(delay)


class Retry(TaskSignal):
    def __init__(self, delay: float | None = None, reason: str = "retry requested by task") -> None:
        super().__init__(reason)
        self.delay = _check_delay(delay, required=False)
        self.reason = reason


class Snooze(TaskSignal):
    def __init__(self, delay: float, reason: str = "snoozed by task") -> None:
        super().__init__(reason)
        self.delay = _check_delay(delay, required=True) or 0.0
        self.reason = reason


class Cancel(TaskSignal):
    def __init__(self, reason: str = "cancelled by task") -> None:
        super().__init__(reason)
        self.reason = reason
