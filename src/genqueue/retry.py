"""Retry policy: whether a failed job gets another attempt, and when.

Semantics (the contract inherited from the seed report):

* ``max_retries`` (default 1) is the number of retries allowed. With ``retry_count`` 0 the
  first retry is allowed; once ``retry_count == max_retries`` the job is dead-lettered.
  A missing or negative ``retry_count`` counts as 0.
* The delay before retry *n* (``n`` = retry_count before the increment, so the first
  retry waits the base) is ``min(base * multiplier**n, max_delay)`` with +/- ``jitter``
  applied, never above ``max_delay`` and never negative.
* A ``retry_after`` carried by the error (HTTP 429/529) is honoured when it is longer.

The policy takes a random source so that tests are exact. It returns a ``RetryDecision``;
applying it is the worker's business.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

from genqueue.classify import ClassifiedError
from genqueue.errors import InvalidInput

MAX_RETRIES_LIMIT = 1000


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str
    delay: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 1
    base_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.10
    max_delay: float = 3600.0
    random: RandomSource = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_max_retries(self.max_retries)
        if not (math.isfinite(self.base_delay) and self.base_delay >= 0):
            raise InvalidInput("base_delay must be a finite number >= 0", field="base_delay")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise InvalidInput("multiplier must be a finite number >= 1", field="multiplier")
        if not (0 <= self.jitter < 1):
            raise InvalidInput("jitter must be in [0, 1)", field="jitter")
        if not (math.isfinite(self.max_delay) and self.max_delay >= 0):
            raise InvalidInput("max_delay must be a finite number >= 0", field="max_delay")

    def delay(self, retry_count: int | None) -> float:
        """Seconds to wait before the retry that follows ``retry_count`` earlier retries."""
        n = normalise_count(retry_count)
        raw = self.max_delay if self._overflows(n) else self.base_delay * self.multiplier**n
        capped = min(raw, self.max_delay)
        if self.jitter:
            capped *= 1 + self.random.uniform(-self.jitter, self.jitter)
        return min(max(capped, 0.0), self.max_delay)

    def _overflows(self, n: int) -> bool:
        if self.base_delay == 0 or self.multiplier == 1:
            return False
        # Compare in log space so huge retry counts cannot overflow a float.
        return math.log(self.max_delay or 1e-9) < math.log(self.base_delay) + n * math.log(
            self.multiplier
        )

    def allows_retry(self, retry_count: int | None, max_retries: int | None = None) -> bool:
        limit = self.max_retries if max_retries is None else max_retries
        return normalise_count(retry_count) < limit

    def decide(
        self,
        error: ClassifiedError,
        retry_count: int | None,
        max_retries: int | None = None,
    ) -> RetryDecision:
        limit = self.max_retries if max_retries is None else max_retries
        n = normalise_count(retry_count)
        if not error.retryable:
            return RetryDecision(False, f"{error.kind.value} errors are not retried")
        if n >= limit:
            return RetryDecision(False, f"retries exhausted ({n} of {limit} used)")
        delay = self.delay(n)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_delay))
        return RetryDecision(
            True, f"{error.kind.value} error is retryable; retry {n + 1} of {limit}", delay
        )


def normalise_count(count: int | None) -> int:
    """A missing or negative retry count counts as 0."""
    if count is None or count < 0:
        return 0
    return int(count)


def check_max_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("max_retries must be an integer", field="max_retries")
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise InvalidInput(
            f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}, got {value}",
            field="max_retries",
        )
    return value
