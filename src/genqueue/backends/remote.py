"""What the networked backends (Redis, PostgreSQL) share about talking to a server: its
clock estimated from round trips, riding out an outage by retrying a call with backoff
for a bounded time (logging the outage once when it starts and once when it ends), and
keeping a wake-up subscription alive across reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from genqueue.errors import BackendError

T = TypeVar("T")

#: First pause after a failed call; it doubles up to ``MAX_DELAY``.
FIRST_DELAY = 0.02
MAX_DELAY = 1.0


#: Pauses between attempts to get a lost wake-up subscription back.
RESUBSCRIBE_FIRST, RESUBSCRIBE_MAX = 0.1, 5.0


async def keep_subscribed(
    session: Callable[[Callable[[], None]], Awaitable[None]],
    lost: Callable[[Exception], Awaitable[None]],
) -> None:
    """Run ``session(connected)`` again and again until cancelled. When it fails,
    ``lost(exc)`` runs, then a pause of 0.1 s doubling to 5 s; ``connected()`` (called
    by the session once it listens) and a session that returns start the pauses over.
    Meanwhile workers poll: a lost subscription costs latency, never a job."""
    delay = RESUBSCRIBE_FIRST

    def connected() -> None:
        nonlocal delay
        delay = RESUBSCRIBE_FIRST

    while True:
        try:
            await session(connected)
            delay = RESUBSCRIBE_FIRST
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await lost(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX)


class ServerClock:
    """The server's time, estimated from the times its answers report (no extra round
    trip): the offset to this machine's monotonic clock."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.observed_at = 0.0

    def observe(self, server_now: float, sent: float, received: float) -> None:
        # The server read its clock somewhere in the round trip; assume the middle.
        self.offset = server_now - (sent + received) / 2
        self.observed_at = received

    def now(self) -> float | None:
        return None if self.offset is None else time.monotonic() + self.offset

    def stale(self, max_age: float) -> bool:
        return self.offset is None or time.monotonic() - self.observed_at > max_age


class Outages:
    """Retries calls to one server across its outages, for up to ``retry_for`` seconds
    per call. ``server`` names it in logs ("Redis"), ``where`` in errors."""

    def __init__(self, server: str, where: str, retry_for: float, log: logging.Logger) -> None:
        self.server = server
        self.where = where
        self.retry_for = retry_for
        self._log = log
        self._since: float | None = None

    async def call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        transient: Callable[[Exception], Exception],
        before_retry: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``fn()``, retried while ``transient`` returns the failure (it raises what must
        not be retried) and the time is not up; ``before_retry`` runs before each retry."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = FIRST_DELAY
        while True:
            try:
                result = await fn()
            except Exception as exc:
                error = transient(exc)
            else:
                if self._since is not None:
                    self._log.warning(
                        "%s is reachable again after %.1f s", self.server, loop.time() - self._since
                    )
                    self._since = None
                return result
            now = loop.time()
            if deadline is None:
                deadline = now + self.retry_for
                if self._since is None:
                    self._since = now
                    self._log.warning("%s call %s failed (%s); retrying", self.server, what, error)
            if now + delay > deadline:
                raise BackendError(f"{self.where} is unavailable ({what}: {error})") from error
            if before_retry is not None:
                await before_retry()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
