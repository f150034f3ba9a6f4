"""Alert settings: the ``[alerts]`` section of the settings file the notifiers read.

::

    [alerts]
    enabled = true            # false: workers do not evaluate alerts (GENQUEUE_ALERTS=off too)
    interval = "30s"          # how often the elected worker evaluates the rules
    repeat_every = "4h"       # a firing alert is sent again this often
    lease = "60s"             # leader lease; another worker takes over after it expires
    history = 100             # resolved alerts kept for `genqueue alerts list`
    link = "https://grafana.example.com/d/genqueue"   # optional, in every notification

    [alerts.digests]          # dead letters grouped by fingerprint, one message per window
    enabled = true
    window = "5m"
    top = 10
    severity = "warning"

    [alerts.rules.dlq_size]   # one table per rule; see rules.py for every rule
    threshold = 100
    severity = "warning"

    [alerts.rules.retry_rate]
    threshold = 0.5
    window = "15m"
    min_sample = 20

    [alerts.rules.oldest_queued]
    enabled = false

Durations are seconds or text such as ``90s``, ``15m``, ``4h``, ``1d``. Unknown keys and
bad values raise ``ConfigError`` naming the setting (``alerts.rules.dlq_size.threshold``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genqueue.errors import ConfigError
from genqueue.observability.alerts.rules import RULE_TYPES, Rule, default_rules
from genqueue.observability.notify.config import FieldError, read_settings_file, settings_path
from genqueue.observability.notify.model import Severity

#: ``off``, ``0``, ``false`` or ``no`` turn alert evaluation off in every worker.
ALERTS_ENV = "GENQUEUE_ALERTS"
_OFF = frozenset({"0", "off", "false", "no"})
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ALERT_KEYS = frozenset(
    {"enabled", "interval", "repeat_every", "lease", "history", "link", "digests", "rules"}
)
_DURATIONS = frozenset({"interval", "repeat_every", "lease"})
_DIGEST_KEYS = frozenset({"enabled", "window", "top", "severity", "grace"})


@dataclass(frozen=True)
class DigestSettings:
    """Dead-letter digests: one notification per error fingerprint and window."""

    enabled: bool = True
    window: float = 300.0
    #: Groups sent one by one; the rest are summed into one more message.
    top: int = 10
    severity: Severity = Severity.WARNING
    #: A window is sent this long after it ends, so entries being written are in it.
    grace: float = 30.0

    def __post_init__(self) -> None:
        _flag(self.enabled, "enabled")
        _seconds(self.window, "window", minimum=60)
        _seconds(self.grace, "grace")
        if isinstance(self.top, bool) or not isinstance(self.top, int) or not 1 <= self.top <= 50:
            raise FieldError("top", "must be a whole number from 1 to 50")
        object.__setattr__(self, "severity", _severity(self.severity))


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    interval: float = 30.0
    repeat_every: float = 4 * 3600.0
    lease: float = 60.0
    history: int = 100
    link: str | None = None
    rules: tuple[Rule, ...] = field(default_factory=default_rules)
    digests: DigestSettings = field(default_factory=DigestSettings)

    def __post_init__(self) -> None:
        _flag(self.enabled, "enabled")
        _seconds(self.interval, "interval", minimum=1)
        _seconds(self.repeat_every, "repeat_every", minimum=60)
        _seconds(self.lease, "lease", minimum=3)
        h = self.history
        if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 1000:
            raise FieldError("history", "must be a whole number from 1 to 1000")
        if self.link is not None and not re.match(r"^https?://[^\s<>|]+$", str(self.link)):
            raise FieldError("link", "must be an http(s) URL without spaces")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise FieldError("rules", "a rule is given twice")

    @property
    def active_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def rule(self, name: str) -> Rule:
        for found in self.rules:
            if found.name == name:
                return found
        raise KeyError(name)

    def repeat_for(self, rule: Rule) -> float:
        return rule.repeat_every if rule.repeat_every is not None else self.repeat_every

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> AlertSettings:
        """From the ``[alerts]`` table of a settings file (and ``GENQUEUE_ALERTS``)."""
        env = os.environ if environ is None else environ
        _known(table, _ALERT_KEYS, "alerts")
        try:
            options: dict[str, Any] = {
                k: parse_duration(v, k) if k in _DURATIONS else v
                for k, v in table.items()
                if k not in ("rules", "digests")
            }
        except FieldError as exc:
            raise exc.at("alerts") from None
        options["rules"] = _rules(_table(table.get("rules", {}), "alerts.rules"))
        options["digests"] = _digests(_table(table.get("digests", {}), "alerts.digests"))
        if env.get(ALERTS_ENV, "").strip().lower() in _OFF:
            options["enabled"] = False
        try:
            return cls(**options)
        except FieldError as exc:
            raise exc.at("alerts") from None

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> AlertSettings:
        """The settings file (``path``, else ``GENQUEUE_SETTINGS``, else the defaults)."""
        env = os.environ if environ is None else environ
        file = settings_path(path, env)
        table: Any = read_settings_file(file).get("alerts", {}) if file is not None else {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"{file}: [alerts] must be a table")
        try:
            return cls.from_mapping(table, env)
        except FieldError as exc:
            raise ConfigError(f"{file}: {exc.message}" if file else exc.message) from None


def parse_duration(value: object, name: str) -> float:
    """Seconds (a number) or text such as ``90s``, ``15m``, ``4h``, ``1d``."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match:
            raise FieldError(name, "must be seconds or a duration such as 90s, 15m, 4h, 1d")
        return float(match.group(1)) * _UNITS[match.group(2)]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(name, "must be seconds or a duration such as 90s, 15m, 4h, 1d")
    if value < 0:
        raise FieldError(name, "must not be negative")
    return float(value)


def _rules(tables: Mapping[str, Any]) -> tuple[Rule, ...]:
    unknown = sorted(set(tables) - set(RULE_TYPES))
    if unknown:
        raise FieldError(
            f"alerts.rules.{unknown[0]}", f"unknown rule (rules: {', '.join(RULE_TYPES)})"
        )
    out = []
    for name, cls in RULE_TYPES.items():
        where = f"alerts.rules.{name}"
        raw = _table(tables.get(name, {}), where)
        fields = {f.name for f in dataclasses.fields(cls)}
        _known(raw, frozenset(fields), where)
        try:
            options: dict[str, Any] = {
                k: parse_duration(v, k) if k in cls.durations else v for k, v in raw.items()
            }
            out.append(cls(**options))
        except FieldError as exc:
            raise exc.at(where) from None
    return tuple(out)


def _digests(raw: Mapping[str, Any]) -> DigestSettings:
    _known(raw, _DIGEST_KEYS, "alerts.digests")
    try:
        options: dict[str, Any] = {
            k: parse_duration(v, k) if k in ("window", "grace") else v for k, v in raw.items()
        }
        return DigestSettings(**options)
    except FieldError as exc:
        raise exc.at("alerts.digests") from None


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(where, "must be a table")
    return value


def _known(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise FieldError(
            f"{where}.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(known))})"
        )


def _flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise FieldError(name, "must be true or false")


def _seconds(value: object, name: str, *, minimum: float = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(name, "must be a number of seconds")
    if value < minimum:
        raise FieldError(name, f"must be at least {minimum:g} seconds")


def _severity(value: object) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        raise FieldError("severity", "use one of info, warning, critical") from None
