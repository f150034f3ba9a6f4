"""Shared pieces of the alert tests: a recording dispatcher and evaluator builders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from genqueue import App
from genqueue.observability.alerts import (
    AlertEvaluator,
    AlertSettings,
    BreakerSource,
    DigestSettings,
    Rule,
)
from genqueue.observability.notify import DeliveryResult, Notification


class Recorder:
    """A dispatcher that records what it was asked to send (and delivers nothing)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def dispatch(self, notification: Notification) -> Sequence[DeliveryResult]:
        self.sent.append(notification)
        return []

    def statuses(self, rule: str | None = None) -> list[str]:
        return [
            n.status.value
            for n in self.sent
            if n.kind.value == "alert" and (rule is None or n.fields.get("rule") == rule)
        ]

    def by_transition(self) -> Counter[tuple[Any, str, Any]]:
        """How many notifications each (rule, status, repeat number) got."""
        return Counter(
            (n.fields.get("rule"), n.status.value, n.fields.get("repeats"))
            for n in self.sent
            if n.kind.value == "alert"
        )


def only(*rules: Rule, **options: Any) -> AlertSettings:
    """Settings evaluating only ``rules`` (no digests unless asked)."""
    options.setdefault("digests", DigestSettings(enabled=False))
    return AlertSettings(rules=rules, **options)


def evaluator(
    app: App,
    settings: AlertSettings,
    holder: str = "w1",
    *,
    recorder: Recorder | None = None,
    breakers: BreakerSource | None = None,
) -> tuple[AlertEvaluator, Recorder]:
    recorder = recorder or Recorder()
    found = AlertEvaluator(app, settings, notifier=recorder, breakers=breakers, holder=holder)
    return found, recorder
