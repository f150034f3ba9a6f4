"""Observability: what genqueue tells operators (metrics, alerts, notifiers, tracing)."""
