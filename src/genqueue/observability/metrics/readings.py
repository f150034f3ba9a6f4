"""Gauges read from the backend, so every process reports the same, true values.

Jobs per queue and state (state ``dead`` is the DLQ size), the age of the oldest job
waiting, live workers and their busy slots, plus whatever extra sources add (provider
breakers and limits). Reading the backend takes queries, so readings are refreshed on a
schedule by an asyncio task and a scrape serves the last ones: a scrape never blocks on
the backend, and the ``genqueue_metrics_refreshed_timestamp_seconds`` gauge tells how
fresh they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from genqueue import presence
from genqueue.analytics import analytics
from genqueue.job import JobState

if TYPE_CHECKING:
    from genqueue.app import App


@dataclass(frozen=True)
class Reading:
    """One gauge sample: metric name (without ``genqueue_``), help, labels, value."""

    name: str
    doc: str
    labels: tuple[tuple[str, str], ...]
    value: float


#: An extra source of readings (providers add breaker and limit gauges this way).
ReadingSource = Callable[["App"], Awaitable[list[Reading]]]


def reading(name: str, doc: str, value: float, **labels: str) -> Reading:
    return Reading(name, doc, tuple(labels.items()), float(value))


async def core_readings(app: App, stale_after: float) -> list[Reading]:
    """Queue sizes, backlog age and workers, from the backend."""
    now = await app.backend.time()
    counts = await app.backend.counts()
    oldest = await app.backend.oldest_ready()
    workers = await presence.live_workers(app, stale_after)
    out: list[Reading] = []
    queues = sorted(set(counts) | set(oldest) | {q for w in workers for q in w.queues})
    for queue in queues:
        for state in JobState:
            n = counts.get(queue, {}).get(state.value, 0)
            out.append(
                reading(
                    "queue_jobs", "Jobs per queue and state.", n, queue=queue, state=state.value
                )
            )
        age = max(0.0, now - oldest[queue]) if queue in oldest else 0.0
        out.append(
            reading(
                "queue_oldest_job_age_seconds",
                "How long the job that has waited longest has been due.",
                age,
                queue=queue,
            )
        )
        serving = sum(1 for w in workers if queue in w.queues)
        out.append(reading("workers", "Live workers serving the queue.", serving, queue=queue))
    out.append(
        reading(
            "worker_slots",
            "Jobs live workers may run at once.",
            sum(w.concurrency for w in workers),
        )
    )
    out.append(
        reading("worker_busy_slots", "Jobs live workers are running.", sum(w.busy for w in workers))
    )
    return out


_RATES = (
    ("retry_success_ratio", "retry_success_rate", "Jobs completed after a retry / jobs retried."),
    ("redrive_success_ratio", "redrive_success_rate", "Redriven jobs completed / redriven."),
    ("failure_ratio", "failure_rate", "Jobs dead-lettered / jobs that ended."),
    ("retry_ratio", "retry_rate", "Jobs retried / jobs that ended."),
)


async def analytics_readings(app: App, window: float) -> list[Reading]:
    """The analytics rates per task over ``window`` (a rate with no sample is left out)."""
    report = await analytics(app, window, top=0)
    out: list[Reading] = []
    for task, found in report.by_task.items():
        for name, attribute, doc in _RATES:
            rate = getattr(found, attribute)
            if rate is not None:
                out.append(reading(name, f"{doc} Over the analytics window.", rate, task=task))
    out.append(reading("analytics_window_seconds", "Window of the *_ratio gauges.", window))
    return out


class BackendGauges(Collector):
    """A prometheus-client collector serving the last readings."""

    def __init__(self, prefix: str = "genqueue_") -> None:
        self.prefix = prefix
        self._readings: Sequence[Reading] = ()
        self.refreshed_at: float | None = None

    def update(self, readings: Iterable[Reading], at: float) -> None:
        self._readings = tuple(readings)
        self.refreshed_at = at

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return ()  # names vary with the sources; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for r in self._readings:
            family = families.get(r.name)
            if family is None:
                names = [k for k, _ in r.labels]
                family = GaugeMetricFamily(self.prefix + r.name, r.doc, labels=names)
                families[r.name] = family
            family.add_metric([v for _, v in r.labels], r.value)
        yield from families.values()
        if self.refreshed_at is not None:
            yield GaugeMetricFamily(
                self.prefix + "metrics_refreshed_timestamp_seconds",
                "When the backend gauges were last read (Unix time).",
                value=self.refreshed_at,
            )
