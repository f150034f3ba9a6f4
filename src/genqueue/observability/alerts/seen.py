"""Which dead letters somebody opened, for the ``retention_unseen`` alert.

"Opened" is deliberately narrow and honest: an entry counts as looked at once it was shown
on its own (``genqueue dlq show ID``; other front ends call ``mark_seen``). Listing,
exporting, counting or a digest do not count: they show many entries at once and say
nothing about whether anyone read this one.

The marks live in one shared-state record, ``alerts:dlq_seen`` (job id -> [failed_at,
expires_at]), updated by compare-and-set, so every process sees them. A mark names the
entry's ``failed_at``: a job that is redriven and fails again is a new entry, unseen.
Marks of expired entries are dropped on every write and the record keeps at most
``MAX_MARKS`` (the soonest to expire go first), so it stays small whatever the DLQ size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from genqueue.entry import DeadLetter

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.alerts")

SEEN_KEY = "alerts:dlq_seen"
MAX_MARKS = 10_000
#: At most this many marks are checked against the DLQ per evaluation.
MAX_CHECKED = 1_000


async def mark_seen(app: App, entries: Iterable[DeadLetter]) -> bool:
    """Record that ``entries`` were shown to somebody; False (logged) if it failed.

    Never raises: showing an entry must not fail because the mark could not be written.
    """
    new = {e.job_id: [e.failed_at, e.expires_at] for e in entries}
    if not new:
        return True
    try:
        for _ in range(10):
            now = await app.backend.time()
            found = await app.backend.state_get(SEEN_KEY)
            marks, version = (dict(found[0]), found[1]) if found else ({}, 0)
            marks.update(new)
            kept = {k: v for k, v in marks.items() if float(v[1]) > now}
            if len(kept) > MAX_MARKS:
                soonest = sorted(kept, key=lambda k: float(kept[k][1]))
                for key in soonest[: len(kept) - MAX_MARKS]:
                    del kept[key]
            if await app.backend.state_put(SEEN_KEY, kept, expect_version=version) is not None:
                return True
    except Exception:
        log.warning("could not record that dead letters were opened", exc_info=True)
        return False
    log.warning("could not record that dead letters were opened: too much contention")
    return False


async def seen_since(app: App, cutoff: float) -> int:
    """How many entries that failed before ``cutoff`` and are still in the DLQ were opened."""
    found = await app.backend.state_get(SEEN_KEY)
    if not found:
        return 0
    candidates = [(k, float(v[0])) for k, v in found[0].items() if float(v[0]) < cutoff]
    count = 0
    for job_id, failed_at in candidates[:MAX_CHECKED]:
        entry = await app.backend.dlq_get(job_id)
        if entry is not None and entry.failed_at == failed_at:
            count += 1
    return count
