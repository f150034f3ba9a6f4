"""A job's attempts as ``job show`` prints them, with the gaps in their numbers explained.

Every fetch of a job is an attempt and gets the next number. A job that waits several
times in a row for the same reason (a rate-limit cooldown, a free slot) keeps one
history entry that counts those snoozes, so its numbers jump (9, then 11). The table
shows such an entry as a range ("9-10") with what happened ("rate limit cooldown x2,
waited 3.9 s"), and a note says why numbers are merged.
"""

from __future__ import annotations

import time

from rich.console import RenderableType

from genqueue.cli.columns import Col, one_line, table
from genqueue.cli.common import out
from genqueue.humanize import seconds
from genqueue.job import Attempt, AttemptOutcome, Job
from genqueue.serialization import iso

COLUMNS = (
    Col("#", justify="right"),
    Col("STARTED"),
    Col("TOOK", justify="right"),
    Col("WORKER", needs=120),
    Col("OUTCOME"),
    Col("DETAIL", flexible=True),
)


def snoozes(attempt: Attempt) -> int:
    """How many wake-ups one history entry stands for (merged snoozes), at least 1."""
    if attempt.outcome is not AttemptOutcome.SNOOZED:
        return 1
    try:
        return max(1, int(attempt.details.get("snoozes", 1)))
    except (TypeError, ValueError):
        return 1


def numbers(attempt: Attempt) -> str:
    count = snoozes(attempt)
    return str(attempt.number) if count == 1 else f"{attempt.number}-{attempt.number + count - 1}"


def detail(attempt: Attempt, job: Job) -> str:
    """What the attempt ended with, in words."""
    if attempt.outcome is AttemptOutcome.SNOOZED:
        count = snoozes(attempt)
        reason = one_line(str(attempt.details.get("reason") or "snoozed"))
        waited = attempt.duration + (attempt.delay or 0.0)
        times = f" x{count}" if count > 1 else ""
        return f"{reason}{times}, waited {seconds(waited)}"
    error = attempt.error
    text = f"{error.kind.value}: {one_line(error.message)}" if error else ""
    if attempt.outcome is AttemptOutcome.FAILED and attempt.delay is not None:
        text += f"; retry in {seconds(attempt.delay)}"
    elif attempt.outcome is AttemptOutcome.INTERRUPTED:
        text = text or "released to the queue at shutdown"
    elif attempt.outcome is AttemptOutcome.CANCELLED:
        text = text or one_line(str(job.meta.get("cancel_reason") or ""))
    return text


def _started(attempt: Attempt) -> str:
    if out.width >= 120:
        return iso(attempt.started_at) or ""
    return time.strftime("%H:%M:%S", time.gmtime(attempt.started_at))  # the date is above


def history_table(job: Job) -> RenderableType:
    rows = [
        {
            "#": numbers(attempt),
            "STARTED": _started(attempt),
            # A merged row spans its waits: its duration is not one attempt's.
            "TOOK": seconds(attempt.duration) if snoozes(attempt) == 1 else "-",
            "WORKER": attempt.worker or "-",
            "OUTCOME": attempt.outcome.value,
            "DETAIL": detail(attempt, job),
        }
        for attempt in job.history
    ]
    zone = "" if out.width >= 120 else " (times UTC)"
    return table(COLUMNS, rows, title=f"attempts{zone}")


def merged_note(job: Job) -> str | None:
    """Why attempt numbers jump, when they do."""
    merged = [a for a in job.history if snoozes(a) > 1]
    if not merged:
        return None
    return (
        f"{numbers(merged[0])}: one row for waits in a row with the same reason (every "
        "fetch of a job counts as an attempt)"
    )
