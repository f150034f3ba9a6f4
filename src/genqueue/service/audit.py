"""The audit log: who did what, when, to which jobs, for every state-changing action.

Kept in the backend's shared state under ``audit:log`` as one bounded list (the last
``KEEP`` entries), changed by compare-and-set so concurrent writers never lose each
other's entries. Every process on the backend (servers, CLIs) sees the same log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genqueue.errors import GenqueueError

if TYPE_CHECKING:
    from genqueue.app import App

KEY = "audit:log"
KEEP = 1000
_TRIES = 50
#: At most this many job ids are kept per entry (bulk actions say how many in ``count``).
_MAX_IDS = 50


class AuditWriteFailed(GenqueueError):
    """The audit entry could not be stored (the log kept changing under us)."""


async def record(
    app: App,
    *,
    who: str,
    action: str,
    job_ids: list[str] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry and return it."""
    ids = list(job_ids or [])
    entry: dict[str, Any] = {
        "at": await app.backend.time(),
        "who": who,
        "action": action,
        "count": len(ids),
        "job_ids": ids[:_MAX_IDS],
        "details": details or {},
    }
    for _ in range(_TRIES):
        found = await app.backend.state_get(KEY)
        entries, version = (list(found[0] or []), found[1]) if found else ([], 0)
        entries.append(entry)
        if await app.backend.state_put(KEY, entries[-KEEP:], expect_version=version) is not None:
            return entry
    raise AuditWriteFailed("could not append to the audit log: too many concurrent writers")


async def entries(app: App, limit: int = KEEP) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first."""
    found = await app.backend.state_get(KEY)
    stored = list(found[0] or []) if found else []
    return list(reversed(stored[-limit:]))
