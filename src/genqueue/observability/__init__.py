"""Observability: Prometheus metrics, alerts, notifications and tracing, built on events."""
