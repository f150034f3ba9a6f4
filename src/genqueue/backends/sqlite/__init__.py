"""The embedded SQLite backend (the default)."""

from genqueue.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
