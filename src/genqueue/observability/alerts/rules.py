"""Alert rules: what each one measures, its thresholds and windows, and their defaults.

A rule reads the backend (through the app) and returns a ``Check``: whether it is active
now, the value it measured and what a notification should say about it. Rules never
notify and never store anything: the lifecycle (firing, repeating, resolving) lives in
``state.py`` and the loop that runs them in ``evaluator.py``.

Every rule fires when its value is *above* its threshold:

==================  ==========================================  ===================
rule                value                                       default
==================  ==========================================  ===================
dlq_size            entries in the DLQ                          100, warning
retry_rate          jobs retried / jobs ended over ``window``   0.5 over 15 min,
                    (only with at least ``min_sample`` ended)   20 ended, warning
dlq_write_failure   moves to the DLQ that could not be stored   0 over 15 min,
                    over ``window`` (``dlq_write_failed``)      critical
dlq_growth          new dead letters over ``window``            50 in 15 min, warning
breaker_open        provider breakers not closed                0, critical
oldest_queued       seconds the oldest due queued job waited    10 min, warning
retention_unseen    entries retention deletes within           0 within 24 h,
                    ``horizon`` that nobody opened              warning
==================  ==========================================  ===================

Provider breakers live above this layer (``genqueue.providers``): the breaker rule reads
them through a ``BreakerSource`` the caller passes in (``genqueue worker`` passes
``genqueue.providers.breaker.list_breakers``); without one it is not evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from genqueue.analytics import BUCKET, MAX_WINDOW, analytics
from genqueue.entry import DLQFilter
from genqueue.observability.alerts.seen import seen_since
from genqueue.observability.notify.config import FieldError
from genqueue.observability.notify.model import Scalar, Severity
from genqueue.serialization import iso

if TYPE_CHECKING:
    from genqueue.app import App

#: Reads the provider breakers: dicts with at least ``account`` and ``state``
#: (``closed``, ``open``, ``half_open``), like ``genqueue breaker list --json``.
BreakerSource = Callable[["App"], Awaitable[Sequence[Mapping[str, Any]]]]


class Unit(StrEnum):
    COUNT = "count"
    RATIO = "ratio"
    SECONDS = "seconds"


class Unavailable(Exception):
    """The rule cannot be evaluated in this process; its alert is left as it is."""


@dataclass(frozen=True)
class Check:
    """What one evaluation of a rule found."""

    active: bool
    value: float | None
    summary: str
    fields: Mapping[str, Scalar] = field(default_factory=dict)
    command: str | None = None


@dataclass(frozen=True)
class AlertContext:
    app: App
    #: The backend's clock: every rule of one round sees the same instant.
    now: float
    breakers: BreakerSource | None = None


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One alert rule and its settings (``[alerts.rules.NAME]`` in the settings file)."""

    name: ClassVar[str] = ""
    unit: ClassVar[Unit] = Unit.COUNT
    #: Settings given as durations ("15m" or seconds) in the settings file.
    durations: ClassVar[frozenset[str]] = frozenset({"repeat_every"})

    enabled: bool = True
    severity: Severity = Severity.WARNING
    threshold: float = 0.0
    #: Seconds between repeats while firing; None: the ``[alerts]`` schedule.
    repeat_every: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise FieldError("enabled", "must be true or false")
        try:
            object.__setattr__(self, "severity", Severity(self.severity))
        except ValueError:
            raise FieldError("severity", "use one of info, warning, critical") from None
        _number(self.threshold, "threshold")
        if self.repeat_every is not None:
            _number(self.repeat_every, "repeat_every", minimum=60)

    @property
    def title(self) -> str:
        raise NotImplementedError

    async def check(self, ctx: AlertContext) -> Check:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The rule's settings, as ``alerts list --json`` and the docs show them."""
        out: dict[str, Any] = {"rule": self.name}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, StrEnum) else value
        return out


@dataclass(frozen=True, kw_only=True)
class WindowRule(Rule):
    """A rule measured over a window of at least a minute (tallies count per minute)."""

    durations: ClassVar[frozenset[str]] = frozenset({"repeat_every", "window"})
    window: float = 900.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self.window, "window", minimum=60, maximum=MAX_WINDOW)


@dataclass(frozen=True, kw_only=True)
class DlqSize(Rule):
    name: ClassVar[str] = "dlq_size"
    threshold: float = 100

    @property
    def title(self) -> str:
        return f"DLQ size above {show(self.threshold, self.unit)}"

    async def check(self, ctx: AlertContext) -> Check:
        size = await ctx.app.dlq.count()
        return Check(
            size > self.threshold,
            size,
            f"{size} entries in the dead letter queue (threshold {show(self.threshold)}).",
            {"dlq_size": size},
            "genqueue dlq stats",
        )


@dataclass(frozen=True, kw_only=True)
class RetryRate(WindowRule):
    name: ClassVar[str] = "retry_rate"
    unit: ClassVar[Unit] = Unit.RATIO
    threshold: float = 0.5
    #: Fewer jobs ended in the window than this: no verdict (the alert does not fire).
    min_sample: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.threshold <= 1:
            raise FieldError("threshold", "must be a ratio between 0 and 1 (0.5 is 50 %)")
        if isinstance(self.min_sample, bool) or not isinstance(self.min_sample, int):
            raise FieldError("min_sample", "must be a whole number of jobs")
        if self.min_sample < 1:
            raise FieldError("min_sample", "must be at least 1")

    @property
    def title(self) -> str:
        return f"Retry rate above {show(self.threshold, self.unit)} over {duration(self.window)}"

    async def check(self, ctx: AlertContext) -> Check:
        total = (await analytics(ctx.app, self.window, top=0)).total
        rate, ended = total.retry_rate, total.ended
        sample: dict[str, Scalar] = {
            "retried": total.retried,
            "ended": ended,
            "window": duration(self.window),
        }
        command = f"genqueue stats --window {duration(self.window)}"
        if rate is None or ended < self.min_sample:
            why = f"{ended} jobs ended in {duration(self.window)}, fewer than {self.min_sample}."
            return Check(False, rate, why, sample, command)
        text = (
            f"{total.retried} of {ended} jobs that ended in the last {duration(self.window)} "
            f"were retried ({show(rate, self.unit)})."
        )
        return Check(rate > self.threshold, rate, text, sample, command)


@dataclass(frozen=True, kw_only=True)
class DlqWriteFailure(WindowRule):
    name: ClassVar[str] = "dlq_write_failure"
    severity: Severity = Severity.CRITICAL

    @property
    def title(self) -> str:
        return "Jobs could not be written to the DLQ"

    async def check(self, ctx: AlertContext) -> Check:
        await ctx.app.tally.flush()  # this process's own failures first
        first, last = int((ctx.now - self.window) // BUCKET) + 1, int(ctx.now // BUCKET)
        counts = await ctx.app.backend.tally_read(first, last)
        failures = round(counts.get("dlq_write_failures", 0))
        return Check(
            failures > self.threshold,
            failures,
            f"{failures} jobs failed for good in the last {duration(self.window)} but storing "
            "their move to the dead letter queue failed (see the dlq_write_failed events in "
            "the worker logs). They come back when their lease expires; check the storage.",
            {"failures": failures, "window": duration(self.window)},
        )


@dataclass(frozen=True, kw_only=True)
class DlqGrowth(WindowRule):
    name: ClassVar[str] = "dlq_growth"
    threshold: float = 50

    @property
    def title(self) -> str:
        return f"More than {show(self.threshold)} new dead letters in {duration(self.window)}"

    async def check(self, ctx: AlertContext) -> Check:
        new = await ctx.app.dlq.count(DLQFilter(since=ctx.now - self.window))
        return Check(
            new > self.threshold,
            new,
            f"{new} jobs were dead-lettered in the last {duration(self.window)}.",
            {"new_dead_letters": new, "window": duration(self.window)},
            f"genqueue dlq stats --since {duration(self.window)}",
        )


@dataclass(frozen=True, kw_only=True)
class BreakerOpen(Rule):
    name: ClassVar[str] = "breaker_open"
    severity: Severity = Severity.CRITICAL

    @property
    def title(self) -> str:
        return "Provider circuit breaker open"

    async def check(self, ctx: AlertContext) -> Check:
        if ctx.breakers is None:
            raise Unavailable("no breaker source")
        broken = [b for b in await ctx.breakers(ctx.app) if b.get("state", "closed") != "closed"]
        shown = ", ".join(
            f"{b.get('account')} {b.get('state')}"
            + (f" ({b['reason']})" if b.get("reason") else "")
            for b in broken[:5]
        )
        text = f"{len(broken)} provider breakers are not closed: {shown}." if broken else ""
        return Check(
            len(broken) > self.threshold,
            len(broken),
            text or "Every provider breaker is closed.",
            {"open_breakers": len(broken), "accounts": shown[:400] or None},
            "genqueue breaker list",
        )


@dataclass(frozen=True, kw_only=True)
class OldestQueued(Rule):
    name: ClassVar[str] = "oldest_queued"
    unit: ClassVar[Unit] = Unit.SECONDS
    durations: ClassVar[frozenset[str]] = frozenset({"repeat_every", "threshold"})
    threshold: float = 600.0

    @property
    def title(self) -> str:
        return f"Oldest queued job waiting longer than {duration(self.threshold)}"

    async def check(self, ctx: AlertContext) -> Check:
        oldest = await ctx.app.backend.oldest_ready()
        ages = {queue: max(0.0, ctx.now - due) for queue, due in oldest.items()}
        if not ages:
            return Check(False, 0.0, "No job is waiting.", {"queue": None})
        queue = max(ages, key=lambda q: ages[q])
        waited = round(ages[queue], 3)
        return Check(
            waited > self.threshold,
            waited,
            f"The oldest due job of queue {queue} has waited {age(waited)}.",
            {"queue": queue, "age_seconds": waited},
            f"genqueue jobs list --state queued --queue {queue}",
        )


@dataclass(frozen=True, kw_only=True)
class RetentionUnseen(Rule):
    """Entries that retention deletes within ``horizon`` and that nobody opened.

    Candidates are the entries that failed before ``now + horizon - retention`` (the app's
    ``Retention.dead_letters``: entries stored under another retention are judged by
    this one). "Opened" means shown one by one: ``genqueue dlq show`` records it (see
    ``seen.py``); listing, exporting or counting does not.
    """

    name: ClassVar[str] = "retention_unseen"
    durations: ClassVar[frozenset[str]] = frozenset({"repeat_every", "horizon"})
    horizon: float = 86400.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self.horizon, "horizon", minimum=60)

    @property
    def title(self) -> str:
        return f"Dead letters deleted within {duration(self.horizon)} that nobody opened"

    async def check(self, ctx: AlertContext) -> Check:
        cutoff = ctx.now + self.horizon - ctx.app.retention.dead_letters
        expiring = await ctx.app.dlq.count(DLQFilter(until=cutoff))
        opened = await seen_since(ctx.app, cutoff) if expiring else 0
        unseen = max(0, expiring - opened)
        return Check(
            unseen > self.threshold,
            unseen,
            f"{unseen} dead letters will be deleted by retention within "
            f"{duration(self.horizon)} and nobody opened them; export or redrive what you need.",
            {"expiring": expiring, "opened": opened, "horizon": duration(self.horizon)},
            f"genqueue dlq list --until {iso(cutoff)}",
        )


#: Every rule, by name, in the order they are shown.
RULE_TYPES: dict[str, type[Rule]] = {
    r.name: r
    for r in (
        DlqSize,
        RetryRate,
        DlqWriteFailure,
        DlqGrowth,
        BreakerOpen,
        OldestQueued,
        RetentionUnseen,
    )
}


def default_rules() -> tuple[Rule, ...]:
    return tuple(cls() for cls in RULE_TYPES.values())


def show(value: float | None, unit: Unit = Unit.COUNT) -> str:
    """A value as people read it: ``132``, ``62 %``, ``12m30s``."""
    if value is None:
        return "-"
    if unit is Unit.RATIO:
        return f"{value * 100:.0f} %"
    if unit is Unit.SECONDS:
        return age(value)
    return f"{value:g}"


def duration(seconds: float) -> str:
    """A setting's duration as the CLI reads it: ``900`` -> ``15m``, ``90`` -> ``90s``."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def age(seconds: float) -> str:
    """A measured time for people: ``754.3`` -> ``12m34s``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def _number(value: object, name: str, *, minimum: float = 0, maximum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(name, "must be a number")
    if value < minimum:
        raise FieldError(name, f"must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        raise FieldError(name, f"must be at most {maximum:g}")
