"""Dead-letter digests: one notification per error fingerprint and window, never per job.

``dead_letter_digests`` is pure: it turns the DLQ statistics of one window (the
``DLQStats`` that ``app.dlq.stats(DLQFilter(since=..., until=...))`` returns) into one
notification per fingerprint group, with the count, error kind and type, the tasks, a
sample message (already redacted by the classifier when the job failed) and the command
that lists the group. Groups beyond the statistics' ``top`` are summed into one more
notification, so a burst of many distinct errors is neither lost nor a flood.

Ids are derived from the fingerprint and the window, so two workers that build the same
digest send the same ``webhook-id`` and receivers can drop the copy.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genqueue.entry import DLQFilter, DLQStats, FingerprintGroup
from genqueue.observability.notify.model import (
    MAX_FIELD_TEXT,
    MAX_SUMMARY,
    MAX_TITLE,
    Notification,
    NotificationKind,
    NotificationStatus,
    Severity,
    notification_id,
)
from genqueue.serialization import iso

if TYPE_CHECKING:
    from genqueue.deadletter import DeadLetterQueue


def digest_filter(since: float, until: float) -> DLQFilter:
    """The filter selecting the entries of one window (``since`` <= failed_at < ``until``)."""
    return DLQFilter(since=since, until=until)


def dead_letter_digests(
    stats: DLQStats,
    *,
    since: float,
    until: float,
    severity: Severity | str = Severity.WARNING,
    link: str | None = None,
) -> list[Notification]:
    """One notification per fingerprint group of ``stats`` (largest first), plus one for
    the entries of the groups beyond ``top``, if any. Empty when the window had none."""
    window = _Window(since, until, stats.total, Severity(severity), link)
    out = [window.group(g) for g in stats.top_fingerprints]
    rest = stats.total - sum(g.count for g in stats.top_fingerprints)
    if rest > 0:
        out.append(window.rest(rest))
    return out


async def collect_dead_letter_digests(
    dlq: DeadLetterQueue,
    *,
    since: float,
    until: float,
    top: int = 10,
    severity: Severity | str = Severity.WARNING,
    link: str | None = None,
) -> list[Notification]:
    """Read the window's statistics (``app.dlq``) and build its digests."""
    stats = await dlq.stats(digest_filter(since, until), top=top)
    return dead_letter_digests(stats, since=since, until=until, severity=severity, link=link)


@dataclass(frozen=True)
class _Window:
    since: float
    until: float
    total: int
    severity: Severity
    link: str | None

    def fields(self) -> dict[str, str | int]:
        return {
            "window_start": iso(self.since) or "",
            "window_end": iso(self.until) or "",
            "window_total": self.total,
        }

    def group(self, group: FingerprintGroup) -> Notification:
        tasks = ", ".join(group.tasks) or "-"
        noun = "dead letter" if group.count == 1 else "dead letters"
        return Notification(
            id=notification_id("dead_letters", group.fingerprint, self.since, self.until),
            kind=NotificationKind.DEAD_LETTERS,
            status=NotificationStatus.FIRING,
            title=_cut(f"{group.count} {noun}: {group.error_kind} in {tasks}", MAX_TITLE),
            severity=self.severity,
            at=self.until,
            summary=_cut(group.sample_message or "(no error message)", MAX_SUMMARY),
            fields={
                "count": group.count,
                "error_kind": group.error_kind,
                "error_type": group.error_type or "-",
                "tasks": _cut(tasks, MAX_FIELD_TEXT),
                "fingerprint": group.fingerprint,
                **self.fields(),
            },
            link=self.link,
            command=f"genqueue dlq list --fingerprint {shlex.quote(group.fingerprint)}",
        )

    def rest(self, count: int) -> Notification:
        return Notification(
            id=notification_id("dead_letters", "(other)", self.since, self.until),
            kind=NotificationKind.DEAD_LETTERS,
            status=NotificationStatus.FIRING,
            title=f"{count} more dead letters in other error groups",
            severity=self.severity,
            at=self.until,
            summary="Smaller groups of this window; `genqueue dlq stats` lists every group.",
            fields={"count": count, **self.fields()},
            link=self.link,
            command=f"genqueue dlq stats --since {iso(self.since)} --until {iso(self.until)}",
        )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
