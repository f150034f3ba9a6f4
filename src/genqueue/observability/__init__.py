"""Observability: metrics, alerts, notifications and tracing; reads events and the backend."""
