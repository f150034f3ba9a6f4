"""Clocks: where genqueue reads the time.

Due times, leases and retention are wall-clock instants (epoch seconds). Backends that
have a server clock (Redis ``TIME``) use it; the others use the clock they were given,
so tests can drive time with ``FakeClock`` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in epoch seconds."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()


#: Where a ``FakeClock`` starts unless told otherwise: 2026-01-01T00:00:00Z.
FAKE_CLOCK_START = 1_767_225_600.0


class FakeClock:
    """A clock that moves only when told to; for tests.

    It starts at 2026-01-01T00:00:00Z (``FAKE_CLOCK_START``, epoch 1767225600) unless
    ``start`` is given, so times in tests and their ISO renderings are predictable.
    ``advance(seconds)`` moves it forward; ``set(instant)`` puts it anywhere.
    """

    def __init__(self, start: float = FAKE_CLOCK_START) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        return self._now

    def set(self, instant: float) -> None:
        self._now = instant


class OffsetClock:
    """The system clock shifted by a fixed offset; simulates a skewed machine."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


SYSTEM_CLOCK = SystemClock()
