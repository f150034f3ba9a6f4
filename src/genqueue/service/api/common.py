"""What the API routes share: the app of the request, times, DLQ filters, pages."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from genqueue.app import App
from genqueue.classify import ErrorKind
from genqueue.entry import DLQFilter
from genqueue.errors import InvalidInput
from genqueue.queue import MAX_PAGE
from genqueue.serialization import parse_instant

JOB_ID = r"^[0-9a-fA-F]{32}$"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


async def get_app(request: Request) -> App:
    """The genqueue app this API serves (opened on first use when mounted without its
    lifespan, e.g. inside another ASGI app)."""
    app: App = request.app.state.genqueue
    await app.open()
    return app


GenApp = Annotated[App, Depends(get_app)]


def parse_duration(text: str, field: str) -> float:
    """'90s', '15m', '2h', '7d', '1w' or plain seconds."""
    match = _DURATION.match(text.strip())
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(
            f"invalid {field} {text!r}: use seconds or 90s, 15m, 2h, 7d, 1w", field=field
        ) from None
    if not 0 <= value < float("inf"):
        raise InvalidInput(f"{field} must be a non-negative number of seconds", field=field)
    return value


async def parse_when(app: App, text: str | None, field: str) -> float | None:
    """ISO 8601, epoch seconds, or an age like '24h' (that long before the backend's now)."""
    if text is None:
        return None
    if _DURATION.match(text.strip()):
        return await app.backend.time() - parse_duration(text, field)
    try:
        value = parse_instant(text)
    except InvalidInput:
        raise InvalidInput(
            f"invalid {field} {text!r}: use ISO 8601 (2026-11-28T12:00:00Z), epoch seconds, "
            "or an age like 24h",
            field=field,
        ) from None
    if not math.isfinite(value):
        raise InvalidInput(f"invalid {field} {text!r}", field=field)
    return value


Text = Annotated[str | None, Query(min_length=1, max_length=200)]
When = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="ISO 8601, epoch seconds, or an age (24h)."),
]


class FilterBody(BaseModel):
    """Selects dead letter entries, like the CLI's filter options. Every field set must
    match; ``since``/``until`` take ISO 8601, epoch seconds or an age like ``24h``."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, min_length=1, max_length=200)
    kind: ErrorKind | None = None
    task: str | None = Field(None, min_length=1, max_length=200)
    queue: str | None = Field(None, min_length=1, max_length=200)
    fingerprint: str | None = Field(None, min_length=1, max_length=200)
    since: str | None = Field(None, min_length=1, max_length=64)
    until: str | None = Field(None, min_length=1, max_length=64)

    async def build(self, app: App) -> DLQFilter:
        return DLQFilter(
            user_id=self.user,
            error_kind=self.kind,
            task=self.task,
            queue=self.queue,
            fingerprint=self.fingerprint,
            since=await parse_when(app, self.since, "since"),
            until=await parse_when(app, self.until, "until"),
        )


async def query_filter(
    user: Text = None,
    kind: ErrorKind | None = None,
    task: Text = None,
    queue: Text = None,
    fingerprint: Text = None,
    since: When = None,
    until: When = None,
) -> FilterBody:
    """The DLQ filter from query parameters (the same names as the CLI's options)."""
    return FilterBody(
        user=user,
        kind=kind,
        task=task,
        queue=queue,
        fingerprint=fingerprint,
        since=since,
        until=until,
    )


QueryFilter = Annotated[FilterBody, Depends(query_filter)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=500, description="`next_cursor` of the previous page."),
]


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """A page in the CLI's ``--json`` shape."""
    return {"items": items, "next_cursor": next_cursor}
