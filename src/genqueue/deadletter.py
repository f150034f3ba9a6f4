"""Dead letter queue operations: look up, list, redrive, delete, purge, export, stats.

Entries are created by the worker in the same backend transaction that makes their job
dead (see ``genqueue.execution``). Here operators act on them. Redrive puts the job back
in its queue with ``retry_count`` 0, its history kept and ``redrive_count`` + 1, and is
refused once ``redrive_count`` reaches the app's ``max_redrives``. Bulk operations work
in bounded chunks, so a DLQ of any size is handled without loading it whole.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TextIO

from genqueue import serialization
from genqueue.backends.base import Move
from genqueue.entry import DeadLetter, DLQFilter, DLQStats, FingerprintGroup, Page, SearchPage
from genqueue.errors import DeadLetterNotFound, InvalidInput, RedriveRefused
from genqueue.events import EventName
from genqueue.job import Job, JobState, check_job_id

if TYPE_CHECKING:
    from genqueue.app import App

CHUNK = 500
#: Entries per page of ``list`` (and ``genqueue dlq list``) unless a limit is given.
DEFAULT_PAGE = 100
#: Entries a text search reads at most (``search``): there is no text index.
SEARCH_SCAN = 5000
_list = list  # the builtin, before DeadLetterQueue.list shadows it in the class body

CSV_COLUMNS = [
    "job_id",
    "user_id",
    "queue",
    "task",
    "error_kind",
    "failure_reason",
    "failed_at",
    "retry_attempts",
    "attempts",
    "redrive_count",
    "fingerprint",
    "remote_job_id",
    "error_type",
    "error_message",
    "expires_at",
    "cost",
    "data",
]


@dataclass
class RedriveReport:
    dry_run: bool
    matched: int = 0
    redriven: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    sample: list[DeadLetter] = field(default_factory=list)

    def to_public(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "matched": self.matched,
            "redriven": len(self.redriven),
            "redriven_ids": self.redriven,
            "refused": self.refused,
            "sample": [e.to_public() for e in self.sample],
        }


class DeadLetterQueue:
    def __init__(self, app: App) -> None:
        self.app = app

    # -- read -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> DeadLetter:
        job_id = check_job_id(job_id)
        entry = await self.app.backend.dlq_get(job_id)
        if entry is None:
            raise DeadLetterNotFound(job_id)
        return entry

    async def list(
        self,
        filter: DLQFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> Page[DeadLetter]:
        """One page of matching entries, newest first; pass ``next_cursor`` for the next."""
        from genqueue.queue import check_limit

        return await self.app.backend.dlq_list(filter or DLQFilter(), cursor, check_limit(limit))

    async def iterate(self, filter: DLQFilter | None = None) -> AsyncGenerator[DeadLetter, None]:
        """Every matching entry, newest first, fetched in chunks."""
        cursor: str | None = None
        while True:
            page = await self.app.backend.dlq_list(filter or DLQFilter(), cursor, CHUNK)
            for entry in page.items:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def count(self, filter: DLQFilter | None = None) -> int:
        return await self.app.backend.dlq_count(filter or DLQFilter())

    async def stats(self, filter: DLQFilter | None = None, *, top: int = 10) -> DLQStats:
        return await self.app.backend.dlq_stats(filter or DLQFilter(), top)

    async def search(
        self,
        text: str,
        filter: DLQFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE,
        scan: int = SEARCH_SCAN,
    ) -> SearchPage:
        """Entries whose failure reason or last error message contains ``text`` (ignoring
        case), newest first: up to ``limit`` among the newest ``scan`` entries matching
        ``filter`` after ``cursor``. There is no text index: this reads up to ``scan``
        entries; ``scanned`` says how many, ``next_cursor`` where to go on."""
        from genqueue.queue import check_limit

        if not text.strip():
            raise InvalidInput("the search text is empty", field="text")
        if scan < 1:
            raise InvalidInput("scan must be at least 1", field="scan")
        flt = filter or DLQFilter()
        return await self.app.backend.dlq_search(
            flt, text.strip(), cursor, check_limit(limit), scan
        )

    async def groups(
        self, filter: DLQFilter | None = None, *, top: int = 10
    ) -> _list[FingerprintGroup]:
        """The ``top`` most frequent error fingerprints of the matching entries, with their
        counts (``stats().top_fingerprints`` without the other figures)."""
        return await self.app.backend.dlq_groups(filter or DLQFilter(), top)

    # -- redrive --------------------------------------------------------------------------

    async def redrive(self, job_id: str) -> Job:
        """Put one dead job back in its queue; raises if it is missing or refused."""
        report = await self.redrive_many([job_id])
        if report.refused:
            reason = report.refused[check_job_id(job_id)]
            if reason.startswith("not found"):
                raise DeadLetterNotFound(check_job_id(job_id))
            raise RedriveRefused(check_job_id(job_id), reason)
        job = await self.app.backend.get(report.redriven[0])
        assert job is not None
        return job

    async def redrive_edited(self, job_id: str, data: Any, *, by: str = "operator") -> Job:
        """Redrive one dead job with new ``data`` (checked like an enqueue's; nothing changes
        if it is invalid, missing or refused). Callers record the edit (the HTTP API audits
        it with digests of the old and new data)."""
        entry = await self.get(job_id)
        task = self.app.tasks.find(entry.task)
        data = task.validate_data(data) if task is not None else data
        serialization.check_json(data, field="data")
        edited = replace(entry.job, data=data)
        report = RedriveReport(dry_run=False, matched=1)
        await self._redrive_chunk([replace(entry, job=edited)], report, by)
        if report.refused:
            reason = report.refused[entry.job_id]
            if reason.startswith("not found"):
                raise DeadLetterNotFound(entry.job_id)
            raise RedriveRefused(entry.job_id, reason)
        job = await self.app.backend.get(entry.job_id)
        assert job is not None
        return job

    async def redrive_many(
        self,
        job_ids: Iterable[str] | None = None,
        *,
        filter: DLQFilter | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        sample_size: int = 5,
        by: str = "operator",
    ) -> RedriveReport:
        """Redrive the given ids, or every entry matching ``filter``, at most ``limit``.

        With ``dry_run`` nothing changes; the report says how many match, which would be
        refused, and shows a sample. ``by`` says who asked (kept in the job's
        ``meta["redrives"]`` and in the ``dlq_retry`` event): ``operator``, or
        ``auto-redrive:<policy>``.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidInput("limit must be a positive integer", field="limit")
        report = RedriveReport(dry_run=dry_run)
        if job_ids is None:
            report.matched = await self.count(filter)
        async for chunk in self._select(job_ids, filter, report):
            todo = chunk if limit is None else chunk[: limit - len(report.redriven)]
            if len(report.sample) < sample_size:
                report.sample.extend(todo[: sample_size - len(report.sample)])
            await self._redrive_chunk(todo, report, by)
            if limit is not None and len(report.redriven) >= limit:
                break
        return report

    async def _select(
        self, job_ids: Iterable[str] | None, filter: DLQFilter | None, report: RedriveReport
    ) -> AsyncIterator[_list[DeadLetter]]:
        """Chunks of entries to redrive: the given ids that exist, or the filter's matches."""
        if job_ids is not None:
            ids = _list(dict.fromkeys(check_job_id(i) for i in job_ids))
            for start in range(0, len(ids), CHUNK):
                chunk = []
                for job_id in ids[start : start + CHUNK]:
                    entry = await self.app.backend.dlq_get(job_id)
                    if entry is None:
                        report.refused[job_id] = "not found in the dead letter queue"
                    else:
                        chunk.append(entry)
                report.matched += len(chunk)
                yield chunk
            return
        chunk = []
        async for entry in self.iterate(filter):
            chunk.append(entry)
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def _redrive_chunk(
        self, chunk: _list[DeadLetter], report: RedriveReport, by: str
    ) -> None:
        max_redrives = self.app.retention.max_redrives
        now = await self.app.backend.time()
        moves: _list[Move] = []
        for entry in chunk:
            if entry.redrive_count >= max_redrives:
                report.refused[entry.job_id] = (
                    f"redriven {entry.redrive_count} times already; the limit is {max_redrives}"
                )
            elif report.dry_run:
                report.redriven.append(entry.job_id)
            else:
                revived = self._revived(entry.job, now, by)
                moves.append(Move(revived, JobState.DEAD, entry.job.attempts))
        if not moves:
            return
        for move, applied in zip(moves, await self.app.backend.move(moves), strict=True):
            job = move.job
            if applied:
                report.redriven.append(job.id)
                self.app.events.emit(
                    EventName.DLQ_RETRY,
                    job_id=job.id,
                    task=job.task,
                    queue=job.queue,
                    redrive_count=job.redrive_count,
                    by=by,
                )
            else:
                report.refused[job.id] = await self._why_not(job)

    @staticmethod
    def _revived(job: Job, now: float, by: str) -> Job:
        # Who redrove it and when, after the attempt it died in (the last 20 redrives).
        log = [*job.meta.get("redrives", []), {"at": now, "by": by, "after_attempt": job.attempts}]
        return replace(
            job,
            meta={**job.meta, "redrives": log[-20:]},
            state=JobState.QUEUED,
            retry_count=0,
            redrive_count=job.redrive_count + 1,
            run_at=now,
            updated_at=now,
            finished_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )

    async def _why_not(self, job: Job) -> str:
        if await self.app.backend.dlq_get(job.id) is None:
            return "not found in the dead letter queue (redriven or deleted meanwhile)"
        return f"another pending job holds its idempotency key {job.idempotency_key!r}"

    # -- delete, purge, retention ---------------------------------------------------------

    async def delete(self, job_id: str) -> None:
        job_id = check_job_id(job_id)
        if not await self.delete_many([job_id]):
            raise DeadLetterNotFound(job_id)

    async def delete_many(self, job_ids: Iterable[str]) -> _list[str]:
        ids = _list(dict.fromkeys(check_job_id(i) for i in job_ids))
        deleted: _list[str] = []
        for start in range(0, len(ids), CHUNK):
            done = await self.app.backend.dlq_delete(ids[start : start + CHUNK])
            self._deleted(done)
            deleted += done
        return deleted

    async def purge(self, filter: DLQFilter | None = None, *, dry_run: bool = False) -> int:
        """Delete every entry matching ``filter`` (use ``until`` to purge by age)."""
        filter = filter or DLQFilter()
        if dry_run:
            return await self.count(filter)
        total = 0
        while True:
            page = await self.app.backend.dlq_list(filter, None, CHUNK)
            if not page.items:
                break
            deleted = await self.app.backend.dlq_delete([e.job_id for e in page.items])
            self._deleted(deleted, purge=True)
            total += len(deleted)
            if not deleted:
                break
        return total

    def _deleted(self, job_ids: _list[str], *, purge: bool = False) -> None:
        # One event per entry, with its job_id, like every other DLQ event.
        for job_id in job_ids:
            self.app.events.emit(EventName.DLQ_DELETE, job_id=job_id, purge=purge)

    async def expire(self) -> int:
        """Delete entries past their retention; emits ``dlq_expired`` with the count."""
        total = 0
        expired: _list[str] = []
        while True:
            removed = await self.app.backend.dlq_expire(1000)
            total += len(removed)
            expired += removed[: 100 - len(expired)]
            if len(removed) < 1000:
                break
        if total:
            self.app.events.emit(EventName.DLQ_EXPIRED, count=total, job_ids=expired)
        return total

    # -- export ---------------------------------------------------------------------------

    async def export(
        self,
        out: TextIO,
        *,
        format: Literal["jsonl", "csv"] = "jsonl",
        filter: DLQFilter | None = None,
    ) -> int:
        """Write matching entries to ``out`` as JSON Lines or CSV; return how many."""
        if format not in ("jsonl", "csv"):
            raise InvalidInput("format must be jsonl or csv", field="format")
        writer = csv.DictWriter(out, CSV_COLUMNS) if format == "csv" else None
        if writer is not None:
            writer.writeheader()
        count = 0
        async for entry in self.iterate(filter):
            if writer is not None:
                writer.writerow(csv_row(entry))
            else:
                out.write(serialization.dumps_str(entry.to_public()) + "\n")
            count += 1
        return count


def csv_row(entry: DeadLetter) -> dict[str, object]:
    public = entry.to_public()
    error = entry.job.last_error
    row = {
        **{k: public[k] for k in CSV_COLUMNS if k in public and k not in ("cost", "data")},
        "error_type": error.type if error else "",
        "error_message": error.message if error else "",
        "cost": serialization.dumps_str(entry.job.cost),
        "data": serialization.dumps_str(entry.job.data),
    }
    return {key: spreadsheet_safe(value) for key, value in row.items()}


#: A spreadsheet reads a cell starting with one of these as a formula (or strips it).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """Neutralise CSV injection (OWASP): a text cell that a spreadsheet would run as a
    formula gets a leading single quote, so error messages and user data stay text."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
