"""Auto-redrive policies: which dead letters go back to run on their own, when, how fast.

A policy is opt-in and names what it matches: error kinds, tasks and/or fingerprints
(empty means any). A dead letter matches once it has been dead for ``cooldown`` seconds
and, with ``wait_for_breakers``, only while no provider circuit breaker is open (so a
policy with ``cooldown=0`` redrives "when the provider's breaker closes"). At most
``per_minute`` entries per policy go back each minute, the app's ``max_redrives`` still
applies, and ``submission_uncertain`` entries (which may have been charged) are never
touched unless the policy names that kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genqueue.classify import ErrorKind
from genqueue.entry import DeadLetter
from genqueue.errors import ConfigError

_FIELDS = frozenset(
    {"name", "error_kinds", "tasks", "fingerprints", "cooldown", "wait_for_breakers", "per_minute"}
)


@dataclass(frozen=True)
class AutoRedrivePolicy:
    name: str
    error_kinds: frozenset[ErrorKind] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)
    fingerprints: frozenset[str] = field(default_factory=frozenset)
    #: Seconds an entry must have been dead before it is redriven.
    cooldown: float = 600.0
    #: Redrive only while no provider circuit breaker is open.
    wait_for_breakers: bool = True
    #: At most this many entries per minute.
    per_minute: int = 60

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"auto-redrive policy name {self.name!r}: use letters, digits, -_")
        if not (math.isfinite(self.cooldown) and self.cooldown >= 0):
            raise ConfigError(f"auto-redrive policy {self.name}: cooldown must be >= 0")
        if isinstance(self.per_minute, bool) or not 1 <= self.per_minute <= 10_000:
            raise ConfigError(f"auto-redrive policy {self.name}: per_minute must be 1..10000")

    def matches(self, entry: DeadLetter) -> bool:
        if entry.error_kind is ErrorKind.SUBMISSION_UNCERTAIN and (
            ErrorKind.SUBMISSION_UNCERTAIN not in self.error_kinds
        ):
            return False  # may have been charged: only when the operator says so
        return (
            (not self.error_kinds or entry.error_kind in self.error_kinds)
            and (not self.tasks or entry.task in self.tasks)
            and (not self.fingerprints or entry.fingerprint in self.fingerprints)
        )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> AutoRedrivePolicy:
        """From a settings table (``[[autoredrive.policies]]`` in the TOML settings file)."""
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ConfigError(f"unknown auto-redrive policy field(s): {', '.join(sorted(unknown))}")
        name = str(raw.get("name", ""))
        try:
            kinds = frozenset(ErrorKind(k) for k in raw.get("error_kinds", ()))
        except ValueError:
            valid = ", ".join(k.value for k in ErrorKind)
            raise ConfigError(
                f"auto-redrive policy {name}: error_kinds must be of {valid}"
            ) from None
        return cls(
            name=name,
            error_kinds=kinds,
            tasks=frozenset(str(t) for t in raw.get("tasks", ())),
            fingerprints=frozenset(str(f) for f in raw.get("fingerprints", ())),
            cooldown=float(raw.get("cooldown", 600.0)),
            wait_for_breakers=bool(raw.get("wait_for_breakers", True)),
            per_minute=int(raw.get("per_minute", 60)),
        )
