"""Prometheus metrics: per-process counters from events, gauges read from the backend."""

from genqueue.observability.metrics.exporter import Metrics
from genqueue.observability.metrics.readings import Reading, ReadingSource, reading

__all__ = ["Metrics", "Reading", "ReadingSource", "reading"]
