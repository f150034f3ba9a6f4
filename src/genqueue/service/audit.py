"""The audit log: who did what, when, to which jobs, through the HTTP API or dashboard.

Stored in the backend's shared state under one key (``audit``) as a bounded list, newest
last, changed by compare-and-set so concurrent servers never lose each other's records.
The list keeps the last ``KEEP`` records: an operator trail, not an archive (ship the
``audit`` events to your log store for that). Records hold ids, counts, filters and data
digests, never job data or tokens.

Job submissions are not written here: the job itself records who submitted it
(``meta["submitted_by"]``) and when (``created_at``), which keeps a submit one write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genqueue.serialization import iso

if TYPE_CHECKING:
    from genqueue.app import App

KEY = "audit"
KEEP = 1000
_TRIES = 50

log = logging.getLogger("genqueue.audit")


@dataclass(frozen=True)
class AuditRecord:
    at: float
    who: str
    action: str
    target: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "who": self.who,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }

    def to_public(self) -> dict[str, Any]:
        return {**self.to_dict(), "at": iso(self.at)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AuditRecord:
        return cls(
            at=float(raw.get("at", 0.0)),
            who=str(raw.get("who", "")),
            action=str(raw.get("action", "")),
            target=raw.get("target"),
            details=dict(raw.get("details") or {}),
        )


async def record(
    app: App, who: str, action: str, target: str | None = None, **details: Any
) -> AuditRecord:
    """Append one record (dropping the oldest past ``KEEP``)."""
    entry = AuditRecord(await app.backend.time(), who, action, target, details)
    for _ in range(_TRIES):
        found = await app.backend.state_get(KEY)
        records = list(found[0] or []) if found else []
        records = [*records, entry.to_dict()][-KEEP:]
        if await app.backend.state_put(KEY, records, expect_version=found[1] if found else 0):
            log.info("audit: %s %s %s", who, action, target or "")
            return entry
    # The action itself is done; losing its record must be visible, not silent.
    log.error("audit: could not store %s %s %s (contention)", who, action, target or "")
    return entry


async def read(app: App, limit: int = 100) -> list[AuditRecord]:
    """The newest ``limit`` records, newest first."""
    found = await app.backend.state_get(KEY)
    records = list(found[0] or []) if found else []
    return [AuditRecord.from_dict(r) for r in reversed(records[-limit:])]


async def entries(app: App, limit: int = KEEP) -> list[dict[str, Any]]:
    """The newest ``limit`` records as dicts for display, newest first: ``job_ids`` (from
    the details, else the target) and ``count`` (how many jobs the action touched)."""
    out = []
    for found in await read(app, limit):
        entry = found.to_dict()
        ids = list(found.details.get("job_ids") or ([found.target] if found.target else []))
        entry["job_ids"] = ids[:50]
        entry["count"] = int(found.details.get("count", len(ids)))
        out.append(entry)
    return out
