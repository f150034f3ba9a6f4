"""The alert lifecycle and where it is stored.

One shared-state record, ``alerts:state`` (JSON, written by compare-and-set), holds every
active alert, the recent resolved ones, the notifications not yet delivered (the outbox)
and the end of the last dead-letter digest window. Each alert goes

    inactive --(rule active)--> firing: one FIRING notification
    firing --(still active, every repeat_every)--> REPEAT notification n = 1, 2, ...
    firing --(rule inactive, or turned off)--> resolved: one RESOLVED notification,
                                              the alert moves to the history

``advance`` computes the next record and its notifications from the current one and a
round of checks; it is pure. The evaluator stores the result with one compare-and-set
and only then sends what the outbox holds, so two evaluators that raced cannot both
notify a change: the one whose write lost starts again from the winner's record.
Notification ids derive from (rule, fired_at, status, n), so a delivery that is repeated
(a leader died after sending, before it cleared the outbox) has the same id and receivers
drop it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from genqueue.observability.alerts.rules import Check, Rule, Unit, age, show
from genqueue.observability.notify.model import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Severity,
    notification_id,
)
from genqueue.serialization import iso

if TYPE_CHECKING:
    from genqueue.backends.base import Backend

STATE_KEY = "alerts:state"
#: The outbox never grows past this (a leader that cannot deliver for days).
MAX_OUTBOX = 200
#: Resolved alerts a listing shows unless asked for another number, and at most.
RECENT = 20
MAX_RECENT = 1000
#: Which alerts a listing shows: the firing ones, the resolved ones, or both.
Which = Literal["firing", "resolved", "all"]


@dataclass
class AlertRecord:
    """One alert: active (``resolved_at`` None) or in the history."""

    rule: str
    severity: str
    title: str
    unit: str
    threshold: float
    fired_at: float
    value: float | None
    summary: str
    last_sent_at: float
    evaluated_at: float
    repeats: int = 0
    resolved_at: float | None = None

    @property
    def state(self) -> str:
        return "firing" if self.resolved_at is None else "resolved"

    def to_public(self) -> dict[str, Any]:
        """The ``alerts list --json`` shape (times ISO 8601)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "title": self.title,
            "since": iso(self.fired_at),
            "resolved_at": iso(self.resolved_at),
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "summary": self.summary,
            "repeats": self.repeats,
            "last_sent_at": iso(self.last_sent_at),
            "evaluated_at": iso(self.evaluated_at),
        }


@dataclass
class AlertsState:
    active: dict[str, AlertRecord] = field(default_factory=dict)
    #: Resolved alerts, newest first.
    history: list[AlertRecord] = field(default_factory=list)
    #: Notifications stored but not yet delivered (``encode_notification`` dicts).
    outbox: list[dict[str, Any]] = field(default_factory=list)
    #: End of the last dead-letter digest window built (None: not started).
    digests_until: float | None = None
    evaluated_at: float | None = None
    evaluator: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "active": {k: dataclasses.asdict(v) for k, v in self.active.items()},
            "history": [dataclasses.asdict(r) for r in self.history],
            "outbox": self.outbox,
            "digests_until": self.digests_until,
            "evaluated_at": self.evaluated_at,
            "evaluator": self.evaluator,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> AlertsState:
        if not raw:
            return cls()
        return cls(
            active={k: _record(v) for k, v in raw.get("active", {}).items()},
            history=[_record(r) for r in raw.get("history", [])],
            outbox=list(raw.get("outbox", [])),
            digests_until=raw.get("digests_until"),
            evaluated_at=raw.get("evaluated_at"),
            evaluator=raw.get("evaluator"),
        )

    def queue(self, notifications: list[Notification]) -> None:
        self.outbox.extend(encode_notification(n) for n in notifications)
        del self.outbox[: max(0, len(self.outbox) - MAX_OUTBOX)]


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(AlertRecord))


def _record(raw: Mapping[str, Any]) -> AlertRecord:
    # Keys a newer version added are ignored, so workers of two versions can share it.
    return AlertRecord(**{k: v for k, v in raw.items() if k in _RECORD_FIELDS})


@dataclass(frozen=True)
class Round:
    """One evaluation: when, by whom, and what each evaluated rule found."""

    now: float
    evaluator: str
    checks: Mapping[str, tuple[Rule, Check]]
    #: Rules turned off in the settings: their active alerts resolve.
    disabled: frozenset[str] = frozenset()
    repeat_every: Mapping[str, float] = field(default_factory=dict)
    history: int = 100
    link: str | None = None


def advance(state: AlertsState, round_: Round) -> list[Notification]:
    """Apply one round to ``state`` (in place); return the notifications it causes (also
    added to the outbox). Rules neither checked nor disabled keep their alert as it is."""
    out: list[Notification] = []
    for name, (rule, check) in round_.checks.items():
        record = state.active.get(name)
        if check.active and record is None:
            record = _fired(rule, check, round_.now)
            state.active[name] = record
            out.append(_notification(record, NotificationStatus.FIRING, check, round_))
        elif check.active and record is not None:
            _update(record, rule, check, round_.now)
            if round_.now - record.last_sent_at >= round_.repeat_every.get(name, 4 * 3600.0):
                record.repeats += 1
                record.last_sent_at = round_.now
                out.append(_notification(record, NotificationStatus.REPEAT, check, round_))
        elif record is not None:
            _update(record, rule, check, round_.now)
            out.append(_resolve(state, record, round_, check))
    for name in round_.disabled:
        record = state.active.get(name)
        if record is not None:
            gone = Check(False, record.value, "The rule was turned off in the settings.")
            out.append(_resolve(state, record, round_, gone))
    del state.history[round_.history :]
    state.evaluated_at = round_.now
    state.evaluator = round_.evaluator
    state.queue(out)
    return out


def _fired(rule: Rule, check: Check, now: float) -> AlertRecord:
    return AlertRecord(
        rule=rule.name,
        severity=rule.severity.value,
        title=rule.title,
        unit=rule.unit.value,
        threshold=rule.threshold,
        fired_at=now,
        value=check.value,
        summary=check.summary,
        last_sent_at=now,
        evaluated_at=now,
    )


def _update(record: AlertRecord, rule: Rule, check: Check, now: float) -> None:
    record.value = check.value
    record.summary = check.summary
    record.evaluated_at = now
    # The settings may have changed since it fired (another leader, a new deploy).
    record.threshold = rule.threshold
    record.title = rule.title
    record.severity = rule.severity.value


def _resolve(state: AlertsState, record: AlertRecord, round_: Round, check: Check) -> Notification:
    record.resolved_at = round_.now
    del state.active[record.rule]
    state.history.insert(0, record)
    return _notification(record, NotificationStatus.RESOLVED, check, round_)


def _notification(
    record: AlertRecord, status: NotificationStatus, check: Check, round_: Round
) -> Notification:
    unit = Unit(record.unit)
    value = show(record.value, unit)
    n = record.repeats if status is NotificationStatus.REPEAT else 0
    if status is NotificationStatus.FIRING:
        title, summary = f"{record.title}: {value}", check.summary
    elif status is NotificationStatus.REPEAT:
        title = f"Still firing: {record.title}: {value}"
        summary = f"{check.summary} Firing since {iso(record.fired_at)}."
    else:
        lasted = age(round_.now - record.fired_at)
        title = f"Resolved: {record.title} (now {value})"
        summary = f"{check.summary} Fired at {iso(record.fired_at)}, lasted {lasted}."
    fields = {
        "rule": record.rule,
        "value": _rounded(record.value),
        "threshold": _rounded(record.threshold),
        "unit": record.unit,
        "fired_at": iso(record.fired_at),
        "repeats": record.repeats,
        **{k: v for k, v in check.fields.items() if k not in _OWN_FIELDS},
    }
    return Notification(
        id=notification_id("alert", record.rule, record.fired_at, status.value, n),
        kind=NotificationKind.ALERT,
        status=status,
        title=title[:200],
        severity=Severity(record.severity),
        at=round_.now,
        summary=summary[:2000],
        fields=fields,
        link=round_.link,
        command=check.command,
    )


_OWN_FIELDS = frozenset({"rule", "value", "threshold", "unit", "fired_at", "repeats"})


def _rounded(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 4)


def encode_notification(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind.value,
        "status": n.status.value,
        "title": n.title,
        "severity": n.severity.value,
        "at": n.at,
        "summary": n.summary,
        "fields": dict(n.fields),
        "link": n.link,
        "command": n.command,
    }


def decode_notification(raw: Mapping[str, Any]) -> Notification:
    return Notification.create(**raw)


async def read_state(backend: Backend) -> tuple[AlertsState, int]:
    """The stored record and its version (0: none yet)."""
    found = await backend.state_get(STATE_KEY)
    if found is None:
        return AlertsState(), 0
    return AlertsState.from_json(found[0]), found[1]


async def read_alerts(backend: Backend) -> AlertsState:
    """Active and recent alerts, as ``genqueue alerts list`` shows them."""
    return (await read_state(backend))[0]


@dataclass(frozen=True)
class AlertList:
    """What ``genqueue alerts list`` and ``GET /api/v1/alerts`` show."""

    #: Firing alerts, oldest first.
    active: list[AlertRecord]
    #: Resolved alerts, newest first.
    recent: list[AlertRecord]
    evaluated_at: float | None
    evaluator: str | None

    def to_public(self) -> dict[str, Any]:
        """The ``alerts list --json`` shape."""
        return {
            "active": [r.to_public() for r in self.active],
            "recent": [r.to_public() for r in self.recent],
            "evaluated_at": iso(self.evaluated_at),
            "evaluator": self.evaluator,
        }


async def list_alerts(backend: Backend, *, recent: int = RECENT, which: Which = "all") -> AlertList:
    """The firing alerts and up to ``recent`` resolved ones, as the evaluator stored them;
    ``which`` leaves out the resolved ("firing") or the firing ("resolved") ones."""
    if which not in get_args(Which):
        raise ValueError(f"which must be one of {', '.join(get_args(Which))}, not {which!r}")
    state = await read_alerts(backend)
    active = sorted(state.active.values(), key=lambda r: r.fired_at)
    return AlertList(
        active=active if which != "resolved" else [],
        recent=state.history[: max(0, recent)] if which != "firing" else [],
        evaluated_at=state.evaluated_at,
        evaluator=state.evaluator,
    )
