"""``genqueue dlq``: list, show, retry (redrive), delete, purge, export, stats.

Ids may be given whole or as a unique prefix (``cli.ids``). Acting on more than one entry
(redrive of all matching, delete of several, purge) asks first; ``--yes`` does not ask,
and without it a command whose stdin is not a terminal refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from genqueue.cli.common import (
    AppOpt,
    BackendOpt,
    JsonOpt,
    err,
    fail_line,
    load_app,
    more_pages,
    out,
    parse_duration,
    parse_when,
    print_json,
    run_with_app,
)
from genqueue.errors import InvalidInput
from genqueue.humanize import plural

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.deadletter import RedriveReport
    from genqueue.entry import DeadLetter, DLQFilter

#: The error kinds, for --help without importing the classifier (a test keeps them equal).
ERROR_KINDS = (
    "auth", "payment", "validation", "rate_limited", "server", "timeout", "network",
    "remote_failed", "remote_lost", "submission_uncertain", "worker_lost", "unknown",
)  # fmt: skip

dlq_app = typer.Typer(
    help="Inspect and act on the dead letter queue.", no_args_is_help=True, rich_markup_mode=None
)

UserOpt = Annotated[str | None, typer.Option("--user", help="Only entries of this user.")]
KindOpt = Annotated[
    str | None,
    typer.Option("--kind", help="Error kind: " + ", ".join(ERROR_KINDS) + "."),
]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Only entries of this task.")]
QueueOpt = Annotated[str | None, typer.Option("--queue", "-q", help="Only entries of this queue.")]
PrintOpt = Annotated[str | None, typer.Option("--fingerprint", help="Only this error fingerprint.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Failed at or after (ISO time or age like 24h).")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Failed before (ISO time or age like 7d).")
]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def make_filter(
    user: str | None,
    kind: str | None,
    task: str | None,
    queue: str | None,
    fingerprint: str | None,
    since: str | None,
    until: str | None,
) -> DLQFilter:
    from genqueue.classify import ErrorKind
    from genqueue.entry import DLQFilter

    try:
        error_kind = ErrorKind(kind) if kind else None
    except ValueError:
        valid = ", ".join(k.value for k in ErrorKind)
        raise InvalidInput(f"invalid --kind {kind!r}; valid kinds: {valid}", field="kind") from None
    return DLQFilter(
        queue=queue,
        user_id=user,
        error_kind=error_kind,
        task=task,
        fingerprint=fingerprint,
        since=parse_when(since, "since"),
        until=parse_when(until, "until"),
    )


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive bulk action; refuse without --yes when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Refusing without --yes (stdin is not a terminal).")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    user: UserOpt = None,
    kind: KindOpt = None,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    fingerprint: PrintOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Page size (1-1000).")] = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue from a previous page.")
    ] = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """List dead letter entries, newest first."""
    flt = make_filter(user, kind, task, queue, fingerprint, since, until)
    app = load_app(app_path, backend)
    page = run_with_app(app, lambda a: a.dlq.list(flt, cursor=cursor, limit=limit))
    if json:
        print_json({"items": [e.to_public() for e in page.items], "next_cursor": page.next_cursor})
        return
    if not page.items:
        out.print(
            "the dead letter queue is empty" if flt.is_empty else "no dead letter entries match"
        )
        return
    from genqueue.cli.render import entries_table

    out.print(entries_table(page.items))
    if page.next_cursor:
        more_pages(page.next_cursor)
    out.print("details: genqueue dlq show JOB_ID    redrive: genqueue dlq retry JOB_ID")


@dlq_app.command("show")
def dlq_show(
    job_id: Annotated[str, typer.Argument(help="The dead job's id (a unique prefix will do).")],
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show one entry: why, attempts, stack."""
    app = load_app(app_path, backend)
    entry = run_with_app(app, lambda a: _opened(a, job_id))
    if json:
        print_json(entry.to_public())
    else:
        from genqueue.cli.render import show_entry

        show_entry(entry)


async def _opened(app: App, job_id: str) -> DeadLetter:
    from genqueue.cli.ids import resolve
    from genqueue.observability.alerts.seen import mark_seen

    entry = await app.dlq.get(await resolve(app, job_id, dead_letter=True))
    await mark_seen(app, [entry])  # somebody looked at it: the retention_unseen alert skips it
    return entry


@dlq_app.command("retry")
def dlq_retry(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Job ids (or unique prefixes) to redrive.", show_default=False),
    ] = None,
    all_matching: Annotated[
        bool, typer.Option("--all", help="Redrive every entry matching the filters.")
    ] = False,
    user: UserOpt = None,
    kind: KindOpt = None,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    fingerprint: PrintOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Redrive at most this many.")] = None,
    dry_run: DryOpt = False,
    yes: YesOpt = False,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Redrive entries back to their queue.

    The retry count starts again; the history is kept.
    """
    flt = make_filter(user, kind, task, queue, fingerprint, since, until)
    if bool(job_ids) == (all_matching or not flt.is_empty):
        raise InvalidInput("give job ids, or --all and/or filters (e.g. --kind server), not both")
    app = load_app(app_path, backend)

    missing: list[str] = []

    async def go(app: App) -> RedriveReport:
        from genqueue.cli.ids import resolve_many

        if job_ids:
            ids, missing[:] = await resolve_many(app, job_ids, dead_letter=True)
            return await app.dlq.redrive_many(ids, dry_run=dry_run, limit=limit)
        if not dry_run:
            count = await app.dlq.count(flt)
            count = count if limit is None else min(count, limit)
            confirm(f"Redrive {_entries(count)} of the dead letter queue?", yes)
        return await app.dlq.redrive_many(filter=flt, dry_run=dry_run, limit=limit)

    report = run_with_app(app, go)
    for text in missing:
        report.refused[text] = "not found in the dead letter queue"
    if json:
        print_json(report.to_public())
    else:
        _print_report(report)
    if job_ids and report.refused and not report.redriven:
        all_missing = all(r.startswith("not found") for r in report.refused.values())
        raise typer.Exit(3 if all_missing else 1)


def _entries(count: int) -> str:
    return plural(count, "entry")


def _print_report(report: RedriveReport) -> None:
    verb = "would redrive" if report.dry_run else "redriven"
    matching = plural(report.matched, "matching entry", "matching entries")
    out.print(f"{verb}: {len(report.redriven)} of {matching}")
    if report.dry_run and report.sample:
        from genqueue.cli.render import entries_table

        out.print(entries_table(report.sample))
    for job_id, reason in list(report.refused.items())[:20]:
        fail_line(f"refused {job_id}: {reason}")
    if len(report.refused) > 20:
        err.print(f"... and {len(report.refused) - 20} more refused")


@dlq_app.command("delete")
def dlq_delete(
    job_ids: Annotated[list[str], typer.Argument(help="Job ids (or unique prefixes) to delete.")],
    yes: YesOpt = False,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete entries and their dead jobs.

    For good; deleting more than one asks first (--yes does not ask).
    """
    app = load_app(app_path, backend)
    missing: list[str] = []

    async def go(app: App) -> list[str]:
        from genqueue.cli.ids import resolve_many

        ids, missing[:] = await resolve_many(app, job_ids, dead_letter=True)
        if len(ids) > 1:
            confirm(f"Delete {_entries(len(ids))} of the dead letter queue for good?", yes)
        return await app.dlq.delete_many(ids) if ids else []

    deleted = run_with_app(app, go)
    missing += [i for i in job_ids if len(i) == 32 and i.lower() not in deleted]
    if json:
        print_json({"deleted": deleted, "not_found": missing})
    else:
        out.print(f"deleted {_entries(len(deleted))}")
        for job_id in missing:
            fail_line(f"not found: {job_id}")
    if missing and not deleted:
        raise typer.Exit(3)


@dlq_app.command("purge")
def dlq_purge(
    expired: Annotated[
        bool, typer.Option("--expired", help="Delete entries past their retention.")
    ] = False,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Delete entries older than this (e.g. 3d).")
    ] = None,
    user: UserOpt = None,
    kind: KindOpt = None,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    fingerprint: PrintOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: DryOpt = False,
    yes: YesOpt = False,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete entries by filter or age.

    --expired enforces retention now.
    """
    if older_than is not None:
        if until is not None:
            raise InvalidInput("give --older-than or --until, not both", field="older_than")
        until = f"{parse_duration(older_than, 'older_than')}s"
    flt = make_filter(user, kind, task, queue, fingerprint, since, until)
    if expired and not flt.is_empty:
        raise InvalidInput("--expired takes no filters")
    app = load_app(app_path, backend)

    async def go(app: App) -> int:
        if expired:
            return await app.dlq.expire() if not dry_run else await _count_expired(app)
        count = await app.dlq.count(flt)
        if dry_run or count == 0:
            return count
        what = "ALL" if flt.is_empty else "the matching"
        confirm(f"Delete {what} {_entries(count)} of the dead letter queue for good?", yes)
        return await app.dlq.purge(flt)

    count = run_with_app(app, go)
    if json:
        print_json({"dry_run": dry_run, "count": count})
    else:
        out.print(f"{'would delete' if dry_run else 'deleted'} {_entries(count)}")


async def _count_expired(app: App) -> int:
    from genqueue.entry import DLQFilter

    now = await app.backend.time()
    return await app.dlq.count(DLQFilter(until=now - app.retention.dead_letters))


@dlq_app.command("export")
def dlq_export(
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    user: UserOpt = None,
    kind: KindOpt = None,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    fingerprint: PrintOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
) -> None:
    """Export matching entries as JSON Lines or CSV."""
    if format not in ("jsonl", "csv"):
        raise InvalidInput(f"invalid --format {format!r}: use jsonl or csv", field="format")
    flt = make_filter(user, kind, task, queue, fingerprint, since, until)
    app = load_app(app_path, backend)

    async def go(app: App) -> int:
        if output is None:
            return await app.dlq.export(sys.stdout, format=format, filter=flt)  # type: ignore[arg-type]
        with output.open("w", encoding="utf-8", newline="") as handle:
            return await app.dlq.export(handle, format=format, filter=flt)  # type: ignore[arg-type]

    count = run_with_app(app, go)
    if output is not None:
        out.print(f"exported {_entries(count)} to {output}")


@dlq_app.command("stats")
def dlq_stats(
    user: UserOpt = None,
    kind: KindOpt = None,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    top: Annotated[int, typer.Option("--top", help="How many fingerprint groups.")] = 10,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Totals by kind, task, user, day; top failures."""
    if not 0 <= top <= 1000:
        raise InvalidInput(f"--top must be between 0 and 1000, got {top}", field="top")
    flt = make_filter(user, kind, task, queue, None, since, until)
    app = load_app(app_path, backend)
    stats = run_with_app(app, lambda a: a.dlq.stats(flt, top=top))
    if json:
        print_json(stats.to_public())
    else:
        from genqueue.cli.render import dlq_stats_view

        dlq_stats_view(stats)
