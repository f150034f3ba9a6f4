"""Analytics over a window: retry and redrive success rates, failure rates, top failures.

Every process counts what happens to jobs (from the app's events) into per-minute
buckets in memory and adds them to the backend's tallies every few seconds and when the
app closes, so the numbers cover every worker and every CLI redrive. Reading a window
sums its minutes; no job is scanned.

Definitions (per task, and over all tasks):

- *retry success rate*: jobs that completed after at least one retry / jobs retried
  (a job counts as retried once, at its first retry);
- *redrive success rate*: redriven jobs that completed / jobs redriven;
- *failure rate*: jobs dead-lettered / jobs that ended (completed, dead or cancelled);
- *retry rate*: jobs retried / jobs that ended (the report's "> 50 % of jobs" alert);
- *top fingerprints*: the most frequent errors among the task's dead letters of the
  window, from the DLQ itself.

``series`` reads the same tallies minute by minute (the dashboard's charts of completed,
failed attempts and dead-lettered per minute).

A rate is None when its denominator is zero. Counts held in memory when a process is
killed (at most the flush interval's worth) are lost: analytics are approximate in that
one way, while the job states themselves never are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from genqueue.entry import DLQFilter, FingerprintGroup
from genqueue.events import Event, EventName

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.analytics")

#: Tallies are kept this long (the longest window that can be asked for).
KEEP = 8 * 24 * 3600.0
MAX_WINDOW = 7 * 24 * 3600.0
#: ``series`` returns one number per minute: a chart's worth, not a week's.
MAX_SERIES_WINDOW = 6 * 3600.0
BUCKET = 60
COUNTS = (
    "attempts",
    "failed_attempts",
    "succeeded",
    "dead",
    "cancelled",
    "retried",
    "completed_after_retry",
    "redriven",
    "redrive_succeeded",
    "dlq_write_failures",
)


def _bucket(at: float) -> int:
    return int(at // BUCKET)


class Tally:
    """Counts one process's job events per minute; ``flush()`` adds them to the backend."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._pending: dict[int, dict[str, float]] = {}
        self._handlers: Mapping[EventName, Callable[[Mapping[str, Any]], list[str]]] = {
            EventName.JOB_STARTED: lambda f: ["attempts"],
            EventName.QUEUE_ERROR: lambda f: ["failed_attempts"],
            EventName.JOB_COMPLETED: _completed,
            EventName.QUEUE_DLQ_MOVE: lambda f: ["dead"],
            EventName.JOB_CANCELLED: lambda f: ["cancelled"],
            # A job counts as retried once: at its first retry.
            EventName.QUEUE_RETRY: lambda f: ["retried"] if f.get("retry_count") == 1 else [],
            EventName.DLQ_RETRY: lambda f: ["redriven"],
            # Counted where it happens and read by the alert evaluator, in any process.
            EventName.DLQ_WRITE_FAILED: lambda f: ["dlq_write_failures"],
        }
        self._unsubscribe = app.events.subscribe(self._on_event, self._handlers)

    def _on_event(self, event: Event) -> None:
        names = self._handlers[event.name](event.fields)
        if not names:
            return
        task = str(event.fields.get("task", ""))
        counts = self._pending.setdefault(_bucket(self.app.clock.now()), {})
        for name in names:
            for key in (name, f"{name}|{task}"):
                counts[key] = counts.get(key, 0.0) + 1

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    async def flush(self) -> None:
        """Add the counts so far to the backend (kept in memory if that fails)."""
        pending, self._pending = self._pending, {}
        for bucket, counts in sorted(pending.items()):
            try:
                await self.app.backend.tally_add(bucket, counts, KEEP)
            except BaseException:
                self._merge_back(bucket, counts)
                raise

    def _merge_back(self, bucket: int, counts: dict[str, float]) -> None:
        into = self._pending.setdefault(bucket, {})
        for name, n in counts.items():
            into[name] = into.get(name, 0.0) + n

    def close(self) -> None:
        self._unsubscribe()


def _completed(fields: Mapping[str, Any]) -> list[str]:
    names = ["succeeded"]
    if int(fields.get("retry_count") or 0) > 0:
        names.append("completed_after_retry")
    if int(fields.get("redrive_count") or 0) > 0:
        names.append("redrive_succeeded")
    return names


@dataclass
class TaskAnalytics:
    task: str | None  # None: every task
    attempts: int = 0
    failed_attempts: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0
    retried: int = 0
    completed_after_retry: int = 0
    redriven: int = 0
    redrive_succeeded: int = 0
    #: Jobs whose move to the DLQ could not be stored (``dlq_write_failed`` events).
    dlq_write_failures: int = 0
    top_fingerprints: list[FingerprintGroup] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return self.succeeded + self.dead + self.cancelled

    @property
    def retry_success_rate(self) -> float | None:
        return _rate(self.completed_after_retry, self.retried)

    @property
    def redrive_success_rate(self) -> float | None:
        return _rate(self.redrive_succeeded, self.redriven)

    @property
    def failure_rate(self) -> float | None:
        return _rate(self.dead, self.ended)

    @property
    def retry_rate(self) -> float | None:
        return _rate(self.retried, self.ended)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top_fingerprints"] = [asdict(g) for g in self.top_fingerprints]
        for name in ("retry_success_rate", "redrive_success_rate", "failure_rate", "retry_rate"):
            out[name] = getattr(self, name)
        return out


@dataclass
class Analytics:
    window: float
    since: float
    until: float
    total: TaskAnalytics
    by_task: dict[str, TaskAnalytics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "since": self.since,
            "until": self.until,
            "total": self.total.to_dict(),
            "by_task": {task: a.to_dict() for task, a in self.by_task.items()},
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def analytics(
    app: App, window: float = 3600.0, *, task: str | None = None, top: int = 3
) -> Analytics:
    """Counts and rates over the last ``window`` seconds (at most 7 days), per task.

    ``top`` > 0 adds each task's most frequent dead-letter fingerprints of the window
    (one DLQ stats query per task); metrics ask for 0.
    """
    if not 60 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be between 60 s and 7 days, got {window} s")
    await app.tally.flush()  # this process's own counts first
    until = await app.backend.time()
    since = until - window
    raw = await app.backend.tally_read(_bucket(since) + 1, _bucket(until))
    total = _build(None, raw, "")
    tasks = sorted({name.split("|", 1)[1] for name in raw if "|" in name})
    by_task = {t: _build(t, raw, f"|{t}") for t in tasks if task is None or t == task}
    if top > 0:
        for t, found in by_task.items():
            stats = await app.dlq.stats(DLQFilter(task=t, since=since), top=top)
            found.top_fingerprints = list(stats.top_fingerprints)
    if task is not None:
        total = by_task.get(task, TaskAnalytics(task))
    return Analytics(window, since, until, total, by_task)


def _build(task: str | None, raw: Mapping[str, float], suffix: str) -> TaskAnalytics:
    found = TaskAnalytics(task)
    for name in COUNTS:
        setattr(found, name, round(raw.get(name + suffix, 0.0)))
    return found


@dataclass(frozen=True)
class Series:
    """Counts per minute: ``counts[name][i]`` is the minute starting ``start + 60 * i``;
    the last minute is the one ``until`` falls in (still filling)."""

    start: float
    until: float
    counts: dict[str, list[int]]


async def series(
    app: App,
    window: float = 3600.0,
    names: Sequence[str] = ("succeeded", "failed_attempts", "dead"),
    *,
    task: str | None = None,
) -> Series:
    """Per-minute counts of ``names`` (from ``COUNTS``) over the last ``window`` seconds
    (60 s to 6 h), over the minutes ``analytics`` sums; ``task`` counts one task's only."""
    if not BUCKET <= window <= MAX_SERIES_WINDOW:
        raise ValueError(f"window must be between 60 s and 6 h, got {window} s")
    unknown = sorted(set(names) - set(COUNTS))
    if unknown:
        raise ValueError(f"unknown counts {', '.join(unknown)}; known: {', '.join(COUNTS)}")
    await app.tally.flush()  # this process's own counts first
    until = await app.backend.time()
    first, last = _bucket(until - window) + 1, _bucket(until)
    suffix = "" if task is None else f"|{task}"
    found = await app.backend.tally_buckets(first, last)
    counts = {
        name: [round(found.get(b, {}).get(name + suffix, 0.0)) for b in range(first, last + 1)]
        for name in names
    }
    return Series(first * BUCKET, until, counts)
