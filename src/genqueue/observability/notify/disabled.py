"""Which notification targets are disabled, in the backend's shared state.

A target that answers 410 Gone (Slack: an archived channel or a deleted webhook) does not
want our messages any more. The first worker to see it writes a record under
``notify:disabled:<target>`` with a compare-and-set, so every worker process (on every
machine sharing the backend) stops sending, and exactly one of them logs it. The record
holds a hash of the URL it applies to: an operator who fixes the URL in the settings
re-enables the target without touching the backend; ``genqueue alerts enable TARGET``
clears it explicitly.

Without a backend (a plain library user) the record lives in this process only. A backend
that cannot be read does not stop delivery: sending to a dead target costs a request,
silently dropping an alert costs an outage.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from genqueue.backends.base import Backend
from genqueue.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger("genqueue.notify")

KEY_PREFIX = "notify:disabled:"


def state_key(target: str) -> str:
    return KEY_PREFIX + target


def url_hash(url: str) -> str:
    """A short one-way hash of a URL (Slack URLs embed a token; never store them)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class DisabledTargets:
    """Reads and writes the disabled flag of targets; see the module docstring."""

    def __init__(self, backend: Backend | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._backend = backend
        self._clock = clock
        self._local: dict[str, tuple[Any, int]] = {}

    async def record(self, target: str, url: str) -> dict[str, Any] | None:
        """The disable record of ``target`` if it applies to ``url``, else None."""
        try:
            found = await self._get(state_key(target))
        except Exception as exc:  # see the module docstring: fail open
            logger.warning(
                "cannot read the disabled state of notify target %s (%s); sending anyway",
                target,
                type(exc).__name__,
            )
            return None
        if found is not None and _applies(found[0], url):
            return dict(found[0])
        return None

    async def disable(self, target: str, url: str, *, status: int, reason: str) -> bool:
        """Mark ``target`` disabled for ``url``; True if this call did it (the caller logs),
        False if it was already disabled or another process won the race."""
        key = state_key(target)
        record = {
            "disabled": True,
            "url": url_hash(url),
            "status": status,
            "reason": reason,
            "at": self._clock.now(),
        }
        try:
            found = await self._get(key)
            if found is not None and _applies(found[0], url):
                return False
            version = found[1] if found is not None else 0
            return await self._put(key, record, version) is not None
        except Exception as exc:
            logger.warning(
                "cannot store the disabled state of notify target %s (%s)",
                target,
                type(exc).__name__,
            )
            return False

    async def enable(self, target: str) -> bool:
        """Clear the flag; True if the target was disabled."""
        key = state_key(target)
        for _ in range(5):  # a concurrent writer only costs a re-read
            found = await self._get(key)
            if found is None or not (isinstance(found[0], dict) and found[0].get("disabled")):
                return False
            cleared = {"disabled": False, "at": self._clock.now()}
            if await self._put(key, cleared, found[1]) is not None:
                return True
        return False

    async def _get(self, key: str) -> tuple[Any, int] | None:
        if self._backend is None:
            return self._local.get(key)
        return await self._backend.state_get(key)

    async def _put(self, key: str, value: Any, expect_version: int) -> int | None:
        if self._backend is not None:
            return await self._backend.state_put(key, value, expect_version=expect_version)
        current = self._local.get(key)
        if (current[1] if current else 0) != expect_version:
            return None
        self._local[key] = (value, expect_version + 1)
        return expect_version + 1


def _applies(value: Any, url: str) -> bool:
    """The stored value disables this URL (a record for an older URL does not)."""
    if not isinstance(value, dict) or not value.get("disabled"):
        return False
    return value.get("url") == url_hash(url)
