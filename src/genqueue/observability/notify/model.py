"""What a notification is, what a delivery returns, and what a notifier must do.

A ``Notification`` is a small frozen record that every notifier renders its own way (a log
record, a signed JSON webhook, a Slack message). It holds only what its creator put in:
an alert's title and numbers, a dead-letter group's count and redacted sample error. It
never carries job data. Its ``id`` stays the same across retries of one delivery, so
receivers can drop duplicates (the Standard Webhooks ``webhook-id``).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from genqueue.errors import InvalidInput
from genqueue.serialization import iso

#: A value of ``Notification.fields``: shown as is by every notifier.
Scalar = str | int | float | bool | None

MAX_TITLE = 200
MAX_SUMMARY = 2000
MAX_FIELDS = 20
MAX_FIELD_NAME = 50
MAX_FIELD_TEXT = 500
# Ids become the ``webhook-id`` header and are signed as "{id}.{timestamp}.{body}": no dots.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_LINK = re.compile(r"^https?://[^\s<>|]+$")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class NotificationKind(StrEnum):
    ALERT = "alert"
    DEAD_LETTERS = "dead_letters"
    TEST = "test"


class NotificationStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"
    #: The alert is still firing; sent on the repeat schedule.
    REPEAT = "repeat"
    TEST = "test"


def new_notification_id() -> str:
    """A random id, for notifications that are not derived from anything stable."""
    return f"ntf_{uuid.uuid4().hex}"


def notification_id(*parts: object) -> str:
    """A stable id from the parts that identify one delivery (e.g. rule, status, fired_at),
    so that two workers that build the same notification give it the same id."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"ntf_{digest[:32]}"


@dataclass(frozen=True)
class Notification:
    """One message for people. Build with ``Notification.create`` or the constructor."""

    id: str
    kind: NotificationKind
    status: NotificationStatus
    title: str
    severity: Severity
    at: float
    summary: str = ""
    fields: Mapping[str, Scalar] = field(default_factory=dict, hash=False)
    #: A URL where the operator sees more (a dashboard page).
    link: str | None = None
    #: A command that shows what the notification is about.
    command: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once, at construction
        set_(self, "kind", _enum(NotificationKind, self.kind, "kind"))
        set_(self, "status", _enum(NotificationStatus, self.status, "status"))
        set_(self, "severity", _enum(Severity, self.severity, "severity"))
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise InvalidInput(
                "notification id must be 1-100 letters, digits, '_' or '-'", field="id"
            )
        _text(self.title, "title", MAX_TITLE, required=True)
        _text(self.summary, "summary", MAX_SUMMARY)
        if not isinstance(self.at, int | float) or not math.isfinite(self.at):
            raise InvalidInput("notification time must be a finite number", field="at")
        if self.link is not None and not _LINK.match(self.link):
            raise InvalidInput("link must be an http(s) URL without spaces", field="link")
        if self.command is not None:
            _text(self.command, "command", MAX_FIELD_TEXT)
        set_(self, "fields", MappingProxyType(_checked_fields(self.fields)))

    @classmethod
    def create(
        cls,
        *,
        kind: NotificationKind | str,
        status: NotificationStatus | str,
        title: str,
        severity: Severity | str,
        at: float,
        summary: str = "",
        fields: Mapping[str, Scalar] | None = None,
        link: str | None = None,
        command: str | None = None,
        id: str | None = None,
    ) -> Notification:
        """Keyword-only construction; a random id unless one is given."""
        return cls(
            id=id or new_notification_id(),
            kind=NotificationKind(kind),
            status=NotificationStatus(status),
            title=title,
            severity=Severity(severity),
            at=at,
            summary=summary,
            fields=dict(fields or {}),
            link=link,
            command=command,
        )

    @property
    def event_type(self) -> str:
        """The Standard Webhooks event type: ``genqueue.alert.firing``, ``genqueue.test``."""
        if self.kind is NotificationKind.TEST:
            return "genqueue.test"
        return f"genqueue.{self.kind.value}.{self.status.value}"

    @property
    def active(self) -> bool:
        """Firing or repeating: something is wrong now."""
        return self.status in (NotificationStatus.FIRING, NotificationStatus.REPEAT)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (the ``data`` of a webhook payload)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "status": self.status.value,
            "severity": self.severity.value,
            "title": self.title,
            "summary": self.summary,
            "fields": dict(self.fields),
            "at": iso(self.at),
            "link": self.link,
            "command": self.command,
        }


def _enum(cls: Any, value: object, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidInput(f"invalid {name} {value!r}: use one of {allowed}", field=name) from None


def _text(value: object, name: str, limit: int, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", field=name)
    if required and not value.strip():
        raise InvalidInput(f"{name} must not be empty", field=name)
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", field=name)


def _checked_fields(fields: Mapping[str, Scalar]) -> dict[str, Scalar]:
    if not isinstance(fields, Mapping):
        raise InvalidInput("fields must be a mapping of names to scalars", field="fields")
    if len(fields) > MAX_FIELDS:
        raise InvalidInput(f"at most {MAX_FIELDS} fields", field="fields")
    out: dict[str, Scalar] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not key or len(key) > MAX_FIELD_NAME:
            raise InvalidInput(
                f"field names must be text of 1-{MAX_FIELD_NAME} characters", field="fields"
            )
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise InvalidInput(f"field {key!r} must be a scalar", field="fields")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"field {key!r} must be finite", field="fields")
        too_long = isinstance(value, str) and len(value) > MAX_FIELD_TEXT
        out[key] = f"{str(value)[: MAX_FIELD_TEXT - 1]}…" if too_long else value
    return out


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    #: Not delivered: the target failed (after retries) or refused it.
    FAILED = "failed"
    #: Not sent: the target answered 410 Gone (now or earlier) and is disabled.
    DISABLED = "disabled"
    #: Not sent on purpose: below the target's min_severity, or off in the settings.
    SKIPPED = "skipped"


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one notification at one target."""

    target: str
    type: str
    outcome: DeliveryOutcome
    attempts: int = 0
    status_code: int | None = None
    #: Why it was not delivered (never a secret or a full URL).
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is DeliveryOutcome.DELIVERED

    @property
    def failed(self) -> bool:
        """The target should have had it and did not (failed or disabled)."""
        return self.outcome in (DeliveryOutcome.FAILED, DeliveryOutcome.DISABLED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "type": self.type,
            "outcome": self.outcome.value,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "error": self.error,
        }


class Notifier(Protocol):
    """Delivers notifications to one target. ``send`` reports failure in its result and
    raises only on cancellation."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    async def send(self, notification: Notification) -> DeliveryResult: ...

    async def aclose(self) -> None: ...
