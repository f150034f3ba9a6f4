"""The PixelLab route table, loaded from ``routes.json`` (data, not code).

PixelLab moves endpoints between sync and async and adds new ones often, so the table
is a file to edit, not branches in the client. The client decides sync vs async from each
response body; ``mode`` here only sets timeouts and the uncertain-submission policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from genqueue.errors import InvalidInput


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    path: str
    mode: Literal["sync", "async"]
    poll_path: str
    id_fields: tuple[str, ...]
    result_fields: tuple[str, ...]
    read_timeout: float
    #: Seconds a remote job may run, from its submit, before it is dead-lettered as late.
    deadline: float


@cache
def routes() -> dict[str, Route]:
    raw = json.loads(resources.files(__package__).joinpath("routes.json").read_text("utf-8"))
    defaults: dict[str, Any] = raw["defaults"]
    table: dict[str, Route] = {}
    for item in raw["routes"]:
        merged = {**defaults, **item}
        mode = merged["mode"]
        table[merged["operation"]] = Route(
            operation=merged["operation"],
            method=merged["method"],
            path=merged["path"],
            mode=mode,
            poll_path=merged["poll_path"],
            id_fields=tuple(merged["id_fields"]),
            result_fields=tuple(merged["result_fields"]),
            read_timeout=float(merged[f"{mode}_read_timeout"]),
            deadline=float(merged["deadline"]),
        )
    return table


def route_for(operation: object) -> Route:
    table = routes()
    if not isinstance(operation, str) or operation not in table:
        raise InvalidInput(
            f"unknown PixelLab operation {operation!r}; known: {', '.join(sorted(table))}",
            field="data.operation",
        )
    return table[operation]


def parse_data(data: Any) -> tuple[str, dict[str, Any]]:
    """A ``pixellab.generate`` job's data: ``{"operation": ..., "params": {...}}``."""
    if not isinstance(data, dict):
        raise InvalidInput(
            "pixellab.generate data must be an object with operation and params", field="data"
        )
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InvalidInput(
            "params must be an object (the PixelLab request body)", field="data.params"
        )
    return str(data.get("operation")), params
