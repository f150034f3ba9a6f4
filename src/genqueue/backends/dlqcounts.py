"""DLQ statistics from counters, as the SQL backends keep them (SQLite migration 0006,
PostgreSQL 0005): rows of (name, value) summed over queues, where ``n`` is the number
of entries, ``u`` those without a user, ``ft:<[fingerprint, task]>`` which tasks share a
fingerprint, and ``<k|t|u|f|d|c>:<value>`` the count (or cost) per kind, task, user,
fingerprint, day and cost unit. This module folds them into ``DLQStats``; each backend
reads the rows and the sample entry of each top fingerprint.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from genqueue.entry import DLQStats, FingerprintGroup


@dataclass
class Counters:
    total: int = 0
    groups: dict[str, dict[str | None, float]] = field(default_factory=lambda: defaultdict(dict))
    fp_tasks: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def top_fingerprints(self, top: int) -> list[tuple[str, int, list[str]]]:
        """(fingerprint, count, tasks) of the ``top`` most frequent, ties by fingerprint."""
        prints = sorted(
            ((str(k), int(v)) for k, v in self.groups["f"].items() if k is not None),
            key=lambda item: (-item[1], item[0]),
        )
        return [(fp, n, sorted(self.fp_tasks[fp])) for fp, n in prints[:top]]


def fold(rows: Iterable[tuple[Any, Any]]) -> Counters:
    counters = Counters()
    for raw_name, raw_value in rows:
        name, value = str(raw_name), float(raw_value)
        if name == "n":
            counters.total = int(value)
        elif name == "u":
            counters.groups["u"][None] = value
        elif name.startswith("ft:"):
            fingerprint, task = orjson.loads(name[3:])
            if value > 0.5:
                counters.fp_tasks[fingerprint].add(task)
        else:
            prefix, _, rest = name.partition(":")
            counters.groups[prefix][rest] = value
    return counters


def _ranked(counts: dict[str | None, float], none_first: bool) -> dict[str, int]:
    """Most first, ties by value with None (no user) first or last, as the backend's
    grouping query orders them (``ORDER BY c DESC, 1``)."""
    items = sorted(
        counts.items(), key=lambda kv: (-kv[1], (kv[0] is None) != none_first, kv[0] or "")
    )
    return {("(none)" if k is None else k): int(v) for k, v in items}


def to_stats(
    counters: Counters,
    groups: list[FingerprintGroup],
    *,
    day: Callable[[str], str],
    none_first: bool,
) -> DLQStats:
    """The statistics; ``day`` turns a day counter's key into the day it names."""
    days = counters.groups["d"].items()
    return DLQStats(
        total=counters.total,
        by_kind=_ranked(counters.groups["k"], none_first),
        by_task=_ranked(counters.groups["t"], none_first),
        by_user=_ranked(counters.groups["u"], none_first),
        by_day=dict(sorted((day(k), int(v)) for k, v in days if k is not None)),
        top_fingerprints=groups,
        cost_lost={
            str(k): round(v, 6)
            for k, v in counters.groups["c"].items()
            if not math.isclose(v, 0, abs_tol=1e-9)
        },
    )
