"""Webhooks signed per the Standard Webhooks convention (https://www.standardwebhooks.com/).

The body is compact JSON ``{"type": "genqueue.alert.firing", "timestamp": ..., "data":
{...notification}}``. Each attempt carries three headers:

- ``webhook-id``: the notification id, the same on every retry (receivers dedupe on it);
- ``webhook-timestamp``: the attempt's time in integer epoch seconds;
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"``
  keyed with the secret's bytes (the secret is written ``whsec_`` + base64).

Signing uses the ``standardwebhooks`` package (the spec's reference library); receivers
can verify with the same package (see the README).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standardwebhooks import Webhook

from genqueue.errors import ConfigError
from genqueue.observability.notify.delivery import HttpNotifier, RetrySchedule, Sleep
from genqueue.observability.notify.disabled import DisabledTargets
from genqueue.observability.notify.model import Notification
from genqueue.redact import Redactor
from genqueue.serialization import dumps, iso

if TYPE_CHECKING:
    import httpx

    from genqueue.clock import Clock

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
#: The spec asks for random secrets of at least 24 bytes (and at most 64).
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def parse_secret(secret: str, field: str = "secret") -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (the prefix is optional).

    Raises ``ConfigError`` naming ``field`` (never showing the value) if it is not strict
    base64 of 24 to 64 bytes.
    """
    text = secret.strip()
    text = text.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{field}: not base64 (expected whsec_ followed by base64)") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(
            f"{field}: must decode to {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} random bytes, "
            f'got {len(key)}; make one with: python -c "import base64, secrets; '
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one attempt."""
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def webhook_payload(notification: Notification) -> dict[str, object]:
    """The JSON body: the spec's recommended ``type`` / ``timestamp`` / ``data`` shape."""
    return {
        "type": notification.event_type,
        "timestamp": iso(notification.at),
        "data": notification.to_dict(),
    }


class WebhookNotifier(HttpNotifier):
    """POSTs signed JSON to one URL; see the module docstring."""

    type = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        disabled: DisabledTargets | None = None,
        client: httpx.AsyncClient | None = None,
        schedule: RetrySchedule | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(
            name,
            url,
            disabled=disabled,
            client=client,
            schedule=schedule,
            sleep=sleep,
            clock=clock,
            redactor=redactor,
        )
        self._key = parse_secret(secret)
        self._redactor.add_secret(secret)

    def render(self, notification: Notification) -> bytes:
        return dumps(webhook_payload(notification))

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        # A new timestamp (and so a new signature) per attempt; the id stays.
        timestamp = int(self._clock.now())
        return {
            "Content-Type": "application/json",
            "webhook-id": notification.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, notification.id, timestamp, body.decode()),
        }
