"""The HTTP service: JSON API under ``/api/v1``, the web dashboard and ``/metrics``."""
