"""The JSON API under ``/api/v1``: jobs, the dead letter queue, and operations."""
