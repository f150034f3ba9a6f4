"""Slack incoming-webhook messages.

A message has a plain ``text`` (what phones and screen readers show) and ``blocks``: a
mrkdwn section with the status, severity, title and summary; a section of fields; a
section with the command (and link) that shows more; a context line with the time and
the notification id. Text from notifications is escaped (``&``, ``<``, ``>``) so an error
message cannot ping a channel or forge a link, and cut to Slack's block limits.

Slack answers a bad or deleted webhook URL with a 4xx and a short text body
(``no_service``, ``channel_is_archived``, ``invalid_token``, ...): those disable the
target like a 410. The URL embeds a token, so it is a secret: it is never logged or shown.
"""

from __future__ import annotations

from typing import Any

from genqueue.observability.notify.delivery import HttpNotifier
from genqueue.observability.notify.model import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Severity,
)
from genqueue.serialization import dumps, iso

# Slack's limits: a section's text 3000 characters, 10 fields of 2000 each.
_SECTION_TEXT = 3000
_FIELD_TEXT = 2000
_MAX_FIELDS = 10

#: Answers (status, body) that mean this webhook URL will never work again.
_GONE_BODIES = {
    404: frozenset({"no_service", "no_team", "channel_not_found"}),
    403: frozenset({"invalid_token"}),
}

_ICONS = {
    NotificationStatus.RESOLVED: ":white_check_mark:",
    NotificationStatus.TEST: ":wave:",
}
_SEVERITY_ICONS = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_blue_circle:",
}


def escape(text: str) -> str:
    """Slack's three control characters, as Slack's docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(notification: Notification) -> str:
    if notification.kind is NotificationKind.DEAD_LETTERS:
        return "DEAD LETTERS"
    return notification.status.value.upper()


def _headline(notification: Notification) -> str:
    icon = _ICONS.get(notification.status, _SEVERITY_ICONS[notification.severity])
    head = (
        f"{icon} *{_label(notification)}* · {notification.severity.value} · "
        f"*{escape(notification.title)}*"
    )
    if notification.summary:
        head += "\n" + escape(notification.summary)
    return _cut(head, _SECTION_TEXT)


def _fields_block(notification: Notification) -> dict[str, Any] | None:
    items = list(notification.fields.items())[:_MAX_FIELDS]
    if not items:
        return None
    fields = [
        {
            "type": "mrkdwn",
            "text": _cut(f"*{escape(key)}*\n{escape(_show(value))}", _FIELD_TEXT),
        }
        for key, value in items
    ]
    return {"type": "section", "fields": fields}


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _more_block(notification: Notification) -> dict[str, Any] | None:
    lines = []
    if notification.command:
        lines.append(f"See them: `{escape(notification.command)}`")
    if notification.link:
        # Links are checked on the notification (http(s), no spaces, no '<', '>' or '|').
        lines.append(f"<{notification.link}|Open in genqueue>")
    if not lines:
        return None
    text = _cut("\n".join(lines), _SECTION_TEXT)
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_message(notification: Notification) -> dict[str, Any]:
    """The incoming-webhook JSON for one notification."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _headline(notification)}}
    ]
    for block in (_fields_block(notification), _more_block(notification)):
        if block is not None:
            blocks.append(block)
    context = f"genqueue · {iso(notification.at)} · {notification.id}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    text = f"[{_label(notification)}] {notification.title}"
    if notification.summary:
        text += f": {notification.summary}"
    return {"text": _cut(escape(text), _SECTION_TEXT), "blocks": blocks}


class SlackNotifier(HttpNotifier):
    """Posts ``slack_message(notification)`` to a Slack incoming-webhook URL."""

    type = "slack"

    def render(self, notification: Notification) -> bytes:
        return dumps(slack_message(notification))

    def is_gone(self, status: int, text: str) -> bool:
        return status == 410 or text in _GONE_BODIES.get(status, frozenset())
