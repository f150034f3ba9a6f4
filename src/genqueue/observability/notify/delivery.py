"""HTTP delivery shared by the webhook and Slack notifiers: retries, backoff and 410 Gone.

One notification is one POST, retried with capped exponential backoff (default 1 s, 5 s,
25 s) on network errors, 429 and 5xx, honouring ``Retry-After`` up to the cap. Other 4xx
and 3xx answers are final (redirects are not followed: the Standard Webhooks advice is to
fix the URL). An answer that says the target is gone (410, and Slack's own variants)
disables the target for every worker through ``DisabledTargets``.

The sleep function and the clock are injected so that tests never sleep. Results carry
status codes and short error text; URLs and secrets never appear in them or in logs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from genqueue.clock import SYSTEM_CLOCK, Clock
from genqueue.errors import ConfigError
from genqueue.observability.notify.disabled import DisabledTargets
from genqueue.observability.notify.model import DeliveryOutcome, DeliveryResult, Notification
from genqueue.redact import Redactor
from genqueue.serialization import iso

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("genqueue.notify")

Sleep = Callable[[float], Awaitable[None]]

USER_AGENT = "genqueue-notify"
_EXCERPT = 200


@dataclass(frozen=True)
class RetrySchedule:
    """Waits between attempts (their number is the number of retries), the longest wait
    (``Retry-After`` included) and the timeout of one request."""

    delays: tuple[float, ...] = (1.0, 5.0, 25.0)
    max_delay: float = 60.0
    timeout: float = 15.0

    def __post_init__(self) -> None:
        for value in (*self.delays, self.max_delay, self.timeout):
            if not math.isfinite(value) or value < 0:
                raise ConfigError("retry delays and timeouts must be finite and >= 0")
        if self.timeout == 0:
            raise ConfigError("the request timeout must be > 0")


def new_client(timeout: float) -> httpx.AsyncClient:
    """The client the notifiers use when none is given."""
    import httpx

    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
    )


@dataclass(frozen=True)
class _Step:
    """What one attempt came to; ``outcome`` None means: try again."""

    outcome: DeliveryOutcome | None
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    reason: str = ""


class HttpNotifier(ABC):
    """POSTs a rendered notification to one URL; subclasses render and name the headers."""

    type: ClassVar[str]

    def __init__(
        self,
        name: str,
        url: str,
        *,
        disabled: DisabledTargets | None = None,
        client: httpx.AsyncClient | None = None,
        schedule: RetrySchedule | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._name = name
        self._url = url
        self._clock = clock or SYSTEM_CLOCK
        self._disabled = disabled or DisabledTargets(clock=self._clock)
        self._client = client
        self._owns_client = client is None
        self._schedule = schedule or RetrySchedule()
        self._sleep = sleep or asyncio.sleep
        self._redactor = redactor or Redactor()
        self._redactor.add_secret(url)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:  # the URL may embed a token
        return f"<{type(self).__name__} {self._name}>"

    @abstractmethod
    def render(self, notification: Notification) -> bytes:
        """The request body."""

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        """Headers of one attempt (called again for each retry)."""
        return {"Content-Type": "application/json"}

    def is_gone(self, status: int, text: str) -> bool:
        """The answer says the target will never accept messages again."""
        return status == 410

    async def send(self, notification: Notification) -> DeliveryResult:
        record = await self._disabled.record(self._name, self._url)
        if record is not None:
            return self._result(DeliveryOutcome.DISABLED, 0, None, _disabled_text(self, record))
        body = self.render(notification)
        attempts, step = await self._deliver(notification, body)
        outcome = step.outcome or DeliveryOutcome.FAILED  # None: retries ran out
        if outcome is DeliveryOutcome.DISABLED:
            await self._disable(step)
        elif outcome is DeliveryOutcome.FAILED:
            logger.warning(
                "notification %s not delivered to %s after %d attempt(s): %s",
                notification.id,
                self._name,
                attempts,
                step.error,
                extra={"target": self._name, "notification_id": notification.id},
            )
        return self._result(outcome, attempts, step.status, step.error)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _deliver(self, notification: Notification, body: bytes) -> tuple[int, _Step]:
        delays = iter(self._schedule.delays)
        attempts = 0
        while True:
            attempts += 1
            step = await self._attempt(notification, body)
            delay = next(delays, None)
            if step.outcome is not None or delay is None:
                return attempts, step
            wait = min(max(delay, step.retry_after or 0.0), self._schedule.max_delay)
            logger.debug(
                "notify target %s: attempt %d failed (%s); retrying in %.1f s",
                self._name,
                attempts,
                step.error,
                wait,
            )
            await self._sleep(wait)

    async def _attempt(self, notification: Notification, body: bytes) -> _Step:
        import httpx

        try:
            response = await self._http().post(
                self._url, content=body, headers=self.headers(notification, body)
            )
        except httpx.UnsupportedProtocol as exc:
            return _Step(DeliveryOutcome.FAILED, error=self._error(exc))
        except httpx.TransportError as exc:  # connect, read, timeouts: worth another try
            return _Step(None, error=self._error(exc))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _Step(DeliveryOutcome.FAILED, error=self._error(exc))
        return self._judge(response.status_code, response.text, response.headers)

    def _judge(self, status: int, text: str, headers: Mapping[str, str]) -> _Step:
        if 200 <= status < 300:
            return _Step(DeliveryOutcome.DELIVERED, status)
        excerpt = " ".join((self._redactor.text(text) or "").split())[:_EXCERPT]
        error = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if self.is_gone(status, text.strip()):
            return _Step(DeliveryOutcome.DISABLED, status, error, reason=excerpt or "gone")
        if status == 429 or status >= 500:
            return _Step(None, status, error, retry_after=_retry_after(headers))
        return _Step(DeliveryOutcome.FAILED, status, error)

    async def _disable(self, step: _Step) -> None:
        status = step.status or 410
        if await self._disabled.disable(self._name, self._url, status=status, reason=step.reason):
            # Exactly one worker wins the compare-and-set, so this is logged once.
            logger.warning(
                "notify target %s answered HTTP %s (%s) and is disabled for every worker; "
                "fix its URL in the settings, or run `genqueue alerts enable %s` to clear it",
                self._name,
                status,
                step.reason,
                self._name,
                extra={"target": self._name, "status_code": status},
            )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self._schedule.timeout)
        return self._client

    def _error(self, exc: Exception) -> str:
        detail = self._redactor.text(str(exc))
        return f"{type(exc).__name__}: {detail}"[:_EXCERPT] if detail else type(exc).__name__

    def _result(
        self, outcome: DeliveryOutcome, attempts: int, status: int | None, error: str | None
    ) -> DeliveryResult:
        return DeliveryResult(self._name, self.type, outcome, attempts, status, error)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header; an HTTP date is ignored (the backoff stands)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _disabled_text(notifier: HttpNotifier, record: Mapping[str, Any]) -> str:
    since = iso(record["at"]) if isinstance(record.get("at"), int | float) else "earlier"
    return (
        f"disabled since {since} after HTTP {record.get('status', 410)} "
        f"({record.get('reason') or 'gone'}); clear with `genqueue alerts enable {notifier.name}`"
    )
