"""Tables and detail views for people (the ``--json`` forms come from ``to_public()``).

Every view fits the console's width (``cli.columns``): ids are short unique prefixes,
low-value columns appear only on wide terminals, and long messages are cut to one line
in tables (``job show`` and ``dlq show`` print them whole).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from genqueue.cli.columns import Col, one_line, table
from genqueue.cli.common import ago, out, short
from genqueue.cli.history import history_table, merged_note
from genqueue.cli.ids import short_ids
from genqueue.entry import DeadLetter, DLQStats
from genqueue.humanize import amounts, number, plural
from genqueue.job import Job, JobState
from genqueue.serialization import dumps_str, iso

STATE_STYLE = {
    "queued": "cyan",
    "scheduled": "blue",
    "active": "yellow",
    "retrying": "magenta",
    "completed": "green",
    "dead": "red",
    "cancelled": "dim",
}


def state_text(state: str, suffix: str = "") -> Text:
    return Text(state + suffix, style=STATE_STYLE.get(state, ""))


JOB_COLUMNS = (
    Col("ID"),
    Col("TASK", needs=100, max_width=24),
    Col("QUEUE", needs=140, max_width=16),
    Col("STATE"),
    Col("TRIES", justify="right"),
    Col("RETRIES", needs=120, justify="right"),
    Col("USER", needs=120, max_width=16),
    Col("CREATED"),
    Col("LAST ERROR", flexible=True),
)


def jobs_table(jobs: Iterable[Job]) -> Table:
    now = time.time()
    jobs = list(jobs)
    ids = short_ids(j.id for j in jobs)
    rows: list[dict[str, RenderableType]] = []
    for job in jobs:
        error = job.last_error
        waiting = job.state in (JobState.SCHEDULED, JobState.RETRYING)
        rows.append(
            {
                "ID": ids[job.id],
                "TASK": job.task,
                "QUEUE": job.queue,
                "STATE": state_text(job.state.value, f" {ago(job.run_at, now)}" if waiting else ""),
                "TRIES": str(job.attempts),
                "RETRIES": f"{job.retry_count}/{job.max_retries}",
                "USER": job.user_id or "-",
                "CREATED": ago(job.created_at, now),
                "LAST ERROR": f"{error.kind.value}: {one_line(error.message)}" if error else "",
            }
        )
    return table(JOB_COLUMNS, rows)


ENTRY_COLUMNS = (
    Col("JOB ID"),
    Col("TASK", needs=110, max_width=24),
    Col("USER", needs=130, max_width=16),
    Col("KIND"),
    Col("FAILED"),
    Col("REDRIVES", needs=150, justify="right"),
    Col("FINGERPRINT", needs=140, max_width=16),
    Col("ERROR", flexible=True),
)


def entries_table(entries: Iterable[DeadLetter]) -> Table:
    now = time.time()
    entries = list(entries)
    ids = short_ids(e.job_id for e in entries)
    rows: list[dict[str, RenderableType]] = []
    for entry in entries:
        error = entry.job.last_error
        rows.append(
            {
                "JOB ID": ids[entry.job_id],
                "TASK": entry.task,
                "USER": entry.user_id or "-",
                "KIND": Text(entry.error_kind.value, style="red"),
                "FAILED": ago(entry.failed_at, now),
                "REDRIVES": str(entry.redrive_count),
                "FINGERPRINT": entry.fingerprint,
                "ERROR": one_line(error.message if error else entry.reason),
            }
        )
    return table(ENTRY_COLUMNS, rows)


def _fields(rows: list[tuple[str, object]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")  # long values wrap; ids and URLs break anywhere
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else str(value))
    return grid


def show_job(job: Job) -> None:
    out.print(_fields(_job_rows(job)))
    if job.history:
        out.print(history_table(job))
        note = merged_note(job)
        if note:
            out.print(Text(note, style="dim"))
    if job.last_error and job.last_error.stack:
        out.print(
            Panel(job.last_error.stack.rstrip(), title="last error stack", border_style="red")
        )


def _job_rows(job: Job) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("id", job.id),
        ("task", f"{job.task} on queue {job.queue}"),
        ("state", state_text(job.state.value)),
        ("user", job.user_id or "-"),
        ("attempts", _attempts(job)),
        ("retries", f"{job.retry_count} of {job.max_retries} used"),
        ("redrives", job.redrive_count),
        *[
            ("redriven", f"{iso(r['at'])} by {r['by']} (after attempt {r['after_attempt']})")
            for r in job.meta.get("redrives", [])[-5:]
        ],
        ("created", iso(job.created_at)),
        ("updated", iso(job.updated_at)),
        ("run at", iso(job.run_at)),
    ]
    optional: list[tuple[str, object, object]] = [
        ("idempotency key", job.idempotency_key, job.idempotency_key),
        ("lease", job.lease_owner, f"{job.lease_owner} until {iso(job.lease_expires_at)}"),
        ("progress", job.progress, job.progress and _progress(job)),
        ("remote job", job.remote_job_id, job.remote_job_id),
        ("cost", job.cost, amounts(job.cost)),
        ("finished", job.finished_at, iso(job.finished_at)),
        ("expires", job.expires_at, iso(job.expires_at)),
        ("last error", job.last_error, job.last_error and _error(job)),
        ("data error", job.data_error, Text(job.data_error or "", style="red")),
    ]
    rows += [(name, value) for name, present, value in optional if present]
    data = dumps_str(job.data) if job.data_error is None else str(job.data)
    rows.append(("data", short(data, 200)))
    if job.result is not None:
        rows.append(("result", short(dumps_str(job.result), 200)))
    return rows


def _progress(job: Job) -> str:
    assert job.progress is not None
    return f"{job.progress.percent:.0f}% {job.progress.message or ''}"


def _error(job: Job) -> Text:
    assert job.last_error is not None
    return Text(f"{job.last_error.kind.value}: {job.last_error.message}", style="red")


def _attempts(job: Job) -> str:
    """The count, and what it is made of when waits are part of it."""
    snoozed = sum(
        int(a.details.get("snoozes", 1)) for a in job.history if a.outcome.value == "snoozed"
    )
    if not snoozed:
        return str(job.attempts)
    return f"{job.attempts} ({plural(snoozed, 'snooze')}: waits that spend no retry)"


def show_entry(entry: DeadLetter) -> None:
    out.print(
        _fields(
            [
                ("failure reason", Text(entry.reason, style="red")),
                ("error kind", entry.error_kind.value),
                ("failed", iso(entry.failed_at)),
                ("expires", iso(entry.expires_at)),
                ("fingerprint", entry.fingerprint),
            ]
        )
    )
    show_job(entry.job)


def _counts(title: str, counts: Mapping[str, int]) -> Table:
    rows = [{"KEY": key, "COUNT": str(count)} for key, count in counts.items()]
    columns = (Col("KEY", flexible=True), Col("COUNT", justify="right"))
    return table(columns, rows, title=title, show_header=False)


TOP_COLUMNS = (
    Col("COUNT", justify="right"),
    Col("FINGERPRINT", max_width=16),
    Col("KIND"),
    Col("TYPE", needs=130, max_width=24),
    Col("SAMPLE MESSAGE", flexible=True),
)


def dlq_stats_view(stats: DLQStats) -> None:
    out.print(f"[bold]{plural(stats.total, 'dead letter entry', 'dead letter entries')}[/bold]")
    for title, counts in (
        ("by error kind", stats.by_kind),
        ("by task", stats.by_task),
        ("by user", stats.by_user),
        ("by day", stats.by_day),
    ):
        if counts:
            out.print(_counts(title, counts))
    if stats.top_fingerprints:
        rows = [
            {
                "COUNT": str(group.count),
                "FINGERPRINT": group.fingerprint,
                "KIND": group.error_kind,
                "TYPE": group.error_type.rsplit(".", 1)[-1],
                "SAMPLE MESSAGE": one_line(group.sample_message),
            }
            for group in stats.top_fingerprints
        ]
        out.print(table(TOP_COLUMNS, rows, title="top failures"))
    if stats.cost_lost:
        out.print(f"spend lost: {amounts(stats.cost_lost)}")


def _provider_lines(guard: dict[str, Any]) -> list[str]:
    """A provider account: breaker, cooldown, limits, and its uncertain submits."""
    breaker = guard["breaker"]
    state = breaker["state"]
    detail = f" ({breaker['reason']})" if state != "closed" and breaker.get("reason") else ""
    cooldown = guard["cooldown_remaining"]
    waiting = f"cooldown {number(round(cooldown))} s" if cooldown >= 0.5 else "no cooldown"
    lanes = ", ".join(
        f"{lane} {info['in_flight']} (at most {max(1, int(info['limit']))} at once)"
        for lane, info in guard["lanes"].items()
    )
    lines = [
        f"provider {guard['account']}: circuit {state}{detail}, {waiting}",
        f"  in flight: {lanes}",
    ]
    ledger = guard.get("ledger") or {}
    if ledger.get("uncertain") or ledger.get("blind_resubmits"):
        lines.append(
            f"  uncertain submits: {ledger['uncertain']}: {ledger['cleared']} resent (not "
            f"charged), {ledger['charged']} maybe charged, {ledger['undecided']} waiting"
        )
        lines.append(f"  possible duplicate charges (blind resends): {ledger['blind_resubmits']}")
    unattributed = _minus(ledger.get("unexplained") or {}, ledger.get("attributed") or {})
    if unattributed or ledger.get("external"):
        lines.append(f"  charged for lost submits, not on any job: {amounts(unattributed)}")
        lines.append(
            f"  charged by other clients of the account: {amounts(ledger.get('external') or {})}"
        )
    return lines


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    diff = {unit: round(a.get(unit, 0.0) - b.get(unit, 0.0), 9) for unit in a}
    return {unit: amount for unit, amount in diff.items() if abs(amount) > 1e-6}


def stats_view(report: dict[str, Any]) -> None:
    """``genqueue stats``: queues x states, DLQ size, provider guards, spend."""
    counts: dict[str, dict[str, int]] = report["queues"]
    columns = (
        Col("QUEUE", flexible=True),
        *(Col(s.value.upper(), justify="right") for s in JobState),
    )
    rows = [
        {"QUEUE": queue, **{s.value.upper(): str(counts[queue].get(s.value, 0)) for s in JobState}}
        for queue in sorted(counts)
    ]
    out.print(table(columns, rows) if counts else "no jobs")
    out.print(f"dead letter entries: {report['dead_letters']}")
    for guard in report["providers"]:
        for line in _provider_lines(guard):
            out.print(line)
    spend = report["spend"]
    out.print(f"spend: {amounts(spend['spent'])}; wasted: {amounts(spend['wasted'])}")
    for title in ("by_task", "by_user"):
        found = spend[title]
        if not found:
            continue
        rows = [
            {"": key, "SPENT": amounts(row["spent"]), "WASTED": amounts(row["wasted"])}
            for key, row in sorted(found.items())
        ]
        spend_columns = (
            Col("", flexible=True),
            Col("SPENT", justify="right"),
            Col("WASTED", justify="right"),
        )
        out.print(table(spend_columns, rows, title=f"spend {title.replace('_', ' ')}"))
    if report.get("analytics"):
        analytics_view(report["analytics"])


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


ANALYTICS_COLUMNS = (
    Col("TASK", max_width=24),
    Col("ENDED", justify="right"),
    Col("FAILED", justify="right"),
    Col("RETRIED", justify="right"),
    Col("RETRY OK", justify="right"),
    Col("REDRIVEN", needs=100, justify="right"),
    Col("REDRIVE OK", needs=100, justify="right"),
    Col("TOP ERROR", flexible=True),
)


def analytics_view(report: dict[str, Any]) -> None:
    """Success and failure rates per task over the window (``genqueue stats``)."""
    seconds = report["window"]
    if seconds >= 86400 and seconds % 86400 == 0:
        span = f"{seconds / 86400:g} d"
    elif seconds >= 3600:
        span = f"{seconds / 3600:g} h"
    else:
        span = f"{seconds / 60:g} min"
    found = report["by_task"]
    if not found:
        out.print(f"last {span}: no job ended")
        return
    rows = []
    for task, a in [*sorted(found.items()), ("all tasks", report["total"])]:
        top = a.get("top_fingerprints") or []
        rows.append(
            {
                "TASK": task,
                "ENDED": str(a["succeeded"] + a["dead"] + a["cancelled"]),
                "FAILED": _pct(a["failure_rate"]),
                "RETRIED": str(a["retried"]),
                "RETRY OK": _pct(a["retry_success_rate"]),
                "REDRIVEN": str(a["redriven"]),
                "REDRIVE OK": _pct(a["redrive_success_rate"]),
                "TOP ERROR": (
                    f"{top[0]['count']}x {one_line(top[0]['sample_message'])}" if top else ""
                ),
            }
        )
    out.print(table(ANALYTICS_COLUMNS, rows, title=f"last {span}"))
