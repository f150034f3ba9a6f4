"""Spend and wasted spend per task and user (part of what ``genqueue stats`` reports).

Spend is summed over the jobs the backend still holds (completed jobs are kept for the
finished-jobs retention, dead ones for the DLQ retention). Wasted spend is what was paid
for attempts that did not produce the result: every cost of a dead or cancelled job, and
the cost of the failed attempts of a completed one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from genqueue.app import App
from genqueue.backends.base import JobQuery
from genqueue.job import wasted_cost

PAGE = 500


def _add(into: dict[str, float], amounts: dict[str, float]) -> None:
    for unit, amount in amounts.items():
        into[unit] = round(into.get(unit, 0.0) + amount, 9)


async def spend_report(app: App) -> dict[str, Any]:
    totals: dict[str, float] = {}
    wasted: dict[str, float] = {}
    by_task: dict[str, dict[str, dict[str, float]]] = defaultdict(
        lambda: {"spent": {}, "wasted": {}}
    )
    by_user: dict[str, dict[str, dict[str, float]]] = defaultdict(
        lambda: {"spent": {}, "wasted": {}}
    )
    cursor: str | None = None
    while True:
        page = await app.backend.list_jobs(JobQuery(cursor=cursor, limit=PAGE))
        for job in page.items:
            if not job.cost:
                continue
            lost = wasted_cost(job)
            for bucket in (by_task[job.task], by_user[job.user_id or "(none)"]):
                _add(bucket["spent"], job.cost)
                _add(bucket["wasted"], lost)
            _add(totals, job.cost)
            _add(wasted, lost)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return {"spent": totals, "wasted": wasted, "by_task": dict(by_task), "by_user": dict(by_user)}
