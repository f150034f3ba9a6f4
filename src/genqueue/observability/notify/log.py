"""The notifier that is always on: one structured record on the ``genqueue.notify`` logger.

Like events (``genqueue.events``), the record carries ``extra["event"]`` (here
``"notification"``) and the notification's JSON shape in ``extra["fields"]``, so
``JsonFormatter`` writes it as one JSON line. Active warning and critical notifications
log at WARNING, everything else at INFO.
"""

from __future__ import annotations

import logging

from genqueue.observability.notify.model import (
    DeliveryOutcome,
    DeliveryResult,
    Notification,
    Severity,
)

EVENT = "notification"


class LogNotifier:
    type = "log"

    def __init__(self, logger: logging.Logger | None = None, name: str = "log") -> None:
        self._log = logger or logging.getLogger("genqueue.notify")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @staticmethod
    def level(notification: Notification) -> int:
        if notification.active and notification.severity.at_least(Severity.WARNING):
            return logging.WARNING
        return logging.INFO

    async def send(self, notification: Notification) -> DeliveryResult:
        self._log.log(
            self.level(notification),
            "%s %s [%s]: %s",
            notification.event_type,
            notification.severity.value,
            notification.title,
            notification.summary,
            extra={"event": EVENT, "fields": notification.to_dict()},
        )
        return DeliveryResult(self._name, self.type, DeliveryOutcome.DELIVERED, attempts=1)

    async def aclose(self) -> None:
        return None
