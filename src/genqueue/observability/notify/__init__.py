"""Notifications: the structured log (always), signed webhooks and Slack messages.

Callers (the alert evaluator, dead-letter digests, ``genqueue alerts test``) build a
``Notification`` and hand it to ``Notifications.dispatch``; this package only delivers.
It owns the delivery rules (retries with backoff, disabling a target that answered 410
Gone, for every worker) and the settings of the targets. It never reads job data: what a
notification says is what its creator put in it.

    from genqueue.observability.notify import Notification, Notifications, NotifySettings

    notifications = Notifications.for_app(app)            # GENQUEUE_SETTINGS + environment
    results = await notifications.dispatch(Notification.create(
        kind="alert", status="firing", severity="critical", at=app.clock.now(),
        title="DLQ size above 100", summary="132 dead letters", fields={"dlq_size": 132},
        command="genqueue dlq stats",
    ))
    await notifications.aclose()
"""

from genqueue.observability.notify.config import (
    SETTINGS_ENV,
    FieldError,
    NotifySettings,
    NotifyTarget,
    TargetType,
    read_settings_file,
    redacted_url,
    settings_path,
)
from genqueue.observability.notify.delivery import HttpNotifier, RetrySchedule
from genqueue.observability.notify.digest import (
    collect_dead_letter_digests,
    dead_letter_digests,
    digest_filter,
)
from genqueue.observability.notify.disabled import DisabledTargets
from genqueue.observability.notify.dispatch import Notifications
from genqueue.observability.notify.log import LogNotifier
from genqueue.observability.notify.model import (
    DeliveryOutcome,
    DeliveryResult,
    Notification,
    NotificationKind,
    NotificationStatus,
    Notifier,
    Severity,
    new_notification_id,
    notification_id,
)
from genqueue.observability.notify.slack import SlackNotifier, slack_message
from genqueue.observability.notify.webhook import (
    WebhookNotifier,
    parse_secret,
    sign,
    webhook_payload,
)

__all__ = [
    "SETTINGS_ENV",
    "DeliveryOutcome",
    "DeliveryResult",
    "DisabledTargets",
    "FieldError",
    "HttpNotifier",
    "LogNotifier",
    "Notification",
    "NotificationKind",
    "NotificationStatus",
    "Notifications",
    "Notifier",
    "NotifySettings",
    "NotifyTarget",
    "RetrySchedule",
    "Severity",
    "SlackNotifier",
    "TargetType",
    "WebhookNotifier",
    "collect_dead_letter_digests",
    "dead_letter_digests",
    "digest_filter",
    "new_notification_id",
    "notification_id",
    "parse_secret",
    "read_settings_file",
    "redacted_url",
    "settings_path",
    "sign",
    "slack_message",
    "webhook_payload",
]
