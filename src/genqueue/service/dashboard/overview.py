"""What the overview page shows: counts per state, the last hour's analytics and charts,
active alerts, breakers, workers and spend, gathered from the genqueue Python API.

It shapes data for ``overview.html`` (words, rounded values, chart geometry through
``charts``); the template only draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genqueue.job import JobState
from genqueue.service.dashboard.charts import BarChart, bar_chart

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.observability.alerts.state import AlertRecord

#: A worker silent for this long is not shown (the workers' default lease).
WORKER_STALE_AFTER = 30.0
WINDOW = 3600.0
#: (tally, chart name, title, what a bar counts), in the order the page shows them.
CHARTS = (
    ("succeeded", "throughput", "Throughput", "completed"),
    ("failed_attempts", "failures", "Failures", "failed attempts"),
    ("dead", "dlq-inflow", "DLQ inflow", "dead-lettered"),
)


@dataclass(frozen=True)
class ActiveAlert:
    """One firing alert, in words."""

    rule: str
    severity: str
    title: str
    since: float
    #: How long it has been firing, e.g. ``12m30s``.
    firing_for: str
    value: str
    threshold: str
    summary: str


async def gather(app: App) -> dict[str, Any]:
    """The overview template's context."""
    from genqueue import presence, stats
    from genqueue.providers.breaker import list_breakers

    per_queue = await app.backend.counts()
    totals = {s.value: 0 for s in JobState}
    for states in per_queue.values():
        for state, count in states.items():
            totals[state] = totals.get(state, 0) + count
    return {
        "counts": totals,
        "per_queue": per_queue,
        "dlq_size": await app.dlq.count(),
        "analytics": (await app.analytics(WINDOW, top=0)).total,
        "charts": await charts(app),
        **await alerts(app),
        "breakers": await list_breakers(app),
        "workers": await presence.live_workers(app, WORKER_STALE_AFTER),
        "spend": await stats.spend_report(app),
    }


async def charts(app: App) -> list[BarChart]:
    """The last hour per minute: completed, failed attempts, dead-lettered."""
    from genqueue.analytics import series

    found = await series(app, WINDOW, [tally for tally, *_ in CHARTS])
    return [
        bar_chart(found.counts[tally], found.start, name=name, title=title, what=what)
        for tally, name, title, what in CHARTS
    ]


async def alerts(app: App) -> dict[str, Any]:
    """The firing alerts (oldest first) and when and by whom they were last evaluated."""
    from genqueue.observability.alerts.state import list_alerts

    listing = await list_alerts(app.backend, which="firing")
    now = await app.backend.time()
    return {
        "alerts": [_active(r, now) for r in listing.active],
        "alerts_evaluated_at": listing.evaluated_at,
        "alerts_evaluator": listing.evaluator,
    }


def _active(record: AlertRecord, now: float) -> ActiveAlert:
    from genqueue.observability.alerts.rules import Unit, age, show

    unit = Unit(record.unit)
    return ActiveAlert(
        rule=record.rule,
        severity=record.severity,
        title=record.title,
        since=record.fired_at,
        firing_for=age(max(0.0, now - record.fired_at)),
        value=show(record.value, unit),
        threshold=show(record.threshold, unit),
        summary=record.summary,
    )
