"""Numbered ``.sql`` migration files, as the SQL backends (SQLite, PostgreSQL) keep them."""

from __future__ import annotations

import re
from importlib import resources


def numbered_migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every ``NNNN_name.sql`` in ``package``'s ``migrations``
    folder, in order; the numbers must run 1..n without gaps."""
    folder = resources.files(package) / "migrations"
    found = []
    for item in folder.iterdir():
        match = re.match(r"^(\d{4})_(.+)\.sql$", item.name)
        if match:
            found.append((int(match.group(1)), match.group(2), item.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must be 1..n without gaps, found {versions}")
    return found
