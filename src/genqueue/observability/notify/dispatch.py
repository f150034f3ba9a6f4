"""The ``Notifications`` facade: send one notification to the log and every target.

``dispatch`` logs the notification (always), then sends it concurrently to every target
that is enabled in the settings and whose ``min_severity`` it meets, and returns one
``DeliveryResult`` per target (the log's first). A failing or broken target never raises
into the caller: alert evaluation and digests must go on when Slack is down.

With the retry schedule a dispatch can take as long as the sum of the delays plus one
timeout per attempt (about a minute and a half by default): callers on a hot path run it
as a background task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from genqueue.clock import SYSTEM_CLOCK, Clock
from genqueue.observability.notify.config import NotifySettings, NotifyTarget, TargetType
from genqueue.observability.notify.delivery import HttpNotifier, Sleep, new_client
from genqueue.observability.notify.disabled import DisabledTargets
from genqueue.observability.notify.log import LogNotifier
from genqueue.observability.notify.model import (
    DeliveryOutcome,
    DeliveryResult,
    Notification,
    NotificationKind,
    NotificationStatus,
    Severity,
)
from genqueue.observability.notify.slack import SlackNotifier
from genqueue.observability.notify.webhook import WebhookNotifier

if TYPE_CHECKING:
    import httpx

    from genqueue.app import App
    from genqueue.backends.base import Backend

logger = logging.getLogger("genqueue.notify")


class Notifications:
    """Delivers notifications to the configured targets; see the module docstring."""

    def __init__(
        self,
        settings: NotifySettings | None = None,
        *,
        backend: Backend | None = None,
        clock: Clock | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings if settings is not None else NotifySettings()
        self._clock = clock or SYSTEM_CLOCK
        self._client = client
        self._owns_client = client is None
        self._sleep = sleep
        self.disabled = DisabledTargets(backend, self._clock)
        self.log = LogNotifier(log)
        self._notifiers: dict[str, HttpNotifier] = {}

    @classmethod
    def for_app(cls, app: App, settings: NotifySettings | None = None) -> Notifications:
        """Targets from ``settings`` (default: ``NotifySettings.load()``, i.e. the file
        named by ``GENQUEUE_SETTINGS`` and the environment); disabled state in the app's
        backend; time from the app's clock."""
        chosen = settings if settings is not None else NotifySettings.load()
        return cls(chosen, backend=app.backend, clock=app.clock)

    @property
    def targets(self) -> tuple[NotifyTarget, ...]:
        return self.settings.targets

    async def dispatch(self, notification: Notification) -> list[DeliveryResult]:
        """Log it and send it to every target that wants it; never raises."""
        return await self._deliver(notification, lambda t: _skip_reason(t, notification.severity))

    async def send_test(self, *, title: str = "genqueue test notification") -> list[DeliveryResult]:
        """Send a test notification to every target enabled in the settings, whatever its
        min_severity (``genqueue alerts test``)."""
        notification = Notification.create(
            kind=NotificationKind.TEST,
            status=NotificationStatus.TEST,
            severity=Severity.INFO,
            title=title,
            summary="If you can read this, genqueue can reach this target.",
            at=self._clock.now(),
        )
        return await self._deliver(notification, lambda t: _skip_reason(t, Severity.CRITICAL))

    async def enable(self, target: str) -> bool:
        """Clear a target's disabled flag (set after 410 Gone); True if it was set."""
        return await self.disabled.enable(target)

    def notifier(self, target: NotifyTarget) -> HttpNotifier:
        """The notifier of one target (built once, sharing this facade's HTTP client)."""
        found = self._notifiers.get(target.name)
        if found is None:
            found = self._build(target)
            self._notifiers[target.name] = found
        return found

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> Notifications:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals -----------------------------------------------------------------------

    async def _deliver(
        self, notification: Notification, skip: Callable[[NotifyTarget], str | None]
    ) -> list[DeliveryResult]:
        # The log first: it is the record that survives a cancelled or hanging delivery.
        logged = await self._log(notification)
        wanted = [t for t in self.targets if skip(t) is None]
        sent = await asyncio.gather(*(self._send_one(notification, t) for t in wanted))
        by_name = {r.target: r for r in sent}
        results = [by_name.get(t.name) or _skipped(t, skip(t) or "") for t in self.targets]
        return [logged, *results]

    async def _send_one(self, notification: Notification, target: NotifyTarget) -> DeliveryResult:
        try:
            return await self.notifier(target).send(notification)
        except Exception as exc:  # a broken notifier must not break the caller
            logger.exception("notify target %s failed unexpectedly", target.name)
            return DeliveryResult(
                target.name, target.type.value, DeliveryOutcome.FAILED, error=type(exc).__name__
            )

    async def _log(self, notification: Notification) -> DeliveryResult:
        try:
            return await self.log.send(notification)
        except Exception as exc:
            return DeliveryResult("log", "log", DeliveryOutcome.FAILED, error=type(exc).__name__)

    def _build(self, target: NotifyTarget) -> HttpNotifier:
        if self._client is None:
            self._client = new_client(self.settings.schedule.timeout)
        if target.type is TargetType.WEBHOOK:
            assert target.secret is not None  # NotifyTarget requires it
            return WebhookNotifier(
                target.name,
                target.url,
                target.secret,
                disabled=self.disabled,
                client=self._client,
                schedule=self.settings.schedule,
                sleep=self._sleep,
                clock=self._clock,
            )
        return SlackNotifier(
            target.name,
            target.url,
            disabled=self.disabled,
            client=self._client,
            schedule=self.settings.schedule,
            sleep=self._sleep,
            clock=self._clock,
        )


def _skip_reason(target: NotifyTarget, severity: Severity) -> str | None:
    if not target.enabled:
        return "off in the settings"
    if not severity.at_least(target.min_severity):
        return f"below min_severity {target.min_severity.value}"
    return None


def _skipped(target: NotifyTarget, why: str) -> DeliveryResult:
    return DeliveryResult(target.name, target.type.value, DeliveryOutcome.SKIPPED, error=why)
