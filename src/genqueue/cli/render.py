"""Tables and detail views for people (the ``--json`` forms come from ``to_public()``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from genqueue.cli.common import ago, out, short
from genqueue.entry import DeadLetter, DLQStats
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


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def jobs_table(jobs: Iterable[Job]) -> Table:
    now = time.time()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "ID",
        "TASK",
        "QUEUE",
        "STATE",
        "TRIES",
        "USER",
        "CREATED",
        "RUN AT",
        "LAST ERROR",
    ):
        table.add_column(
            column, no_wrap=column != "LAST ERROR", min_width=32 if column == "ID" else None
        )
    for job in jobs:
        error = job.last_error
        table.add_row(
            job.id,
            job.task,
            job.queue,
            state_text(job.state.value),
            f"{job.attempts} ({job.retry_count}/{job.max_retries} retries)",
            job.user_id or "-",
            ago(job.created_at, now),
            ago(job.run_at, now) if job.state.value in ("scheduled", "retrying") else "-",
            f"{error.kind.value}: {short(error.message, 50)}" if error else "",
        )
    return table


def entries_table(entries: Iterable[DeadLetter]) -> Table:
    now = time.time()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB ID", "TASK", "USER", "KIND", "FAILED", "REDRIVES", "FINGERPRINT", "ERROR"):
        table.add_column(
            column, no_wrap=column != "ERROR", min_width=32 if column == "JOB ID" else None
        )
    for entry in entries:
        error = entry.job.last_error
        table.add_row(
            entry.job_id,
            entry.task,
            entry.user_id or "-",
            Text(entry.error_kind.value, style="red"),
            ago(entry.failed_at, now),
            str(entry.redrive_count),
            entry.fingerprint,
            short(error.message if error else entry.reason, 60),
        )
    return table


def _fields(rows: list[tuple[str, object]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else str(value))
    return table


def show_job(job: Job) -> None:
    rows: list[tuple[str, object]] = [
        ("id", job.id),
        ("task", job.task),
        ("queue", job.queue),
        ("state", state_text(job.state.value)),
        ("user", job.user_id or "-"),
        ("attempts", job.attempts),
        ("retries", f"{job.retry_count} of {job.max_retries}"),
        ("redrives", job.redrive_count),
        *[
            ("redriven", f"{iso(r['at'])} by {r['by']} (after attempt {r['after_attempt']})")
            for r in job.meta.get("redrives", [])[-5:]
        ],
        ("created", iso(job.created_at)),
        ("updated", iso(job.updated_at)),
        ("run at", iso(job.run_at)),
    ]
    if job.idempotency_key:
        rows.append(("idempotency key", job.idempotency_key))
    if job.lease_owner:
        rows.append(("lease", f"{job.lease_owner} until {iso(job.lease_expires_at)}"))
    if job.progress:
        rows.append(("progress", f"{job.progress.percent:.0f}% {job.progress.message or ''}"))
    if job.remote_job_id:
        rows.append(("remote job", job.remote_job_id))
    if job.cost:
        rows.append(("cost", ", ".join(f"{v:g} {k}" for k, v in job.cost.items())))
    if job.finished_at:
        rows.append(("finished", iso(job.finished_at)))
    if job.data_error:
        rows.append(("data error", Text(job.data_error, style="red")))
    rows.append(
        ("data", short(dumps_str(job.data) if job.data_error is None else str(job.data), 200))
    )
    if job.result is not None:
        rows.append(("result", short(dumps_str(job.result), 200)))
    out.print(_fields(rows))
    show_history(job)
    if job.last_error and job.last_error.stack:
        out.print(
            Panel(job.last_error.stack.rstrip(), title="last error stack", border_style="red")
        )


def show_history(job: Job) -> None:
    if not job.history:
        return
    table = Table(
        title="attempts", box=None, header_style="bold", title_justify="left", pad_edge=False
    )
    for column in ("#", "STARTED", "DURATION", "WORKER", "OUTCOME", "ERROR", "DELAY"):
        table.add_column(column, no_wrap=column != "ERROR")
    for attempt in job.history:
        error = attempt.error
        table.add_row(
            str(attempt.number),
            iso(attempt.started_at) or "",
            f"{attempt.duration:.3f} s",
            attempt.worker or "-",
            attempt.outcome.value,
            f"{error.kind.value}: {short(error.message, 70)}" if error else "",
            f"{attempt.delay:.2f} s" if attempt.delay is not None else "",
        )
    out.print(table)


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


def dlq_stats_view(stats: DLQStats) -> None:
    out.print(f"[bold]{stats.total}[/bold] dead letter entries")
    for title, counts in (
        ("by error kind", stats.by_kind),
        ("by task", stats.by_task),
        ("by user", stats.by_user),
        ("by day", stats.by_day),
    ):
        if counts:
            table = Table(
                title=title, box=None, title_justify="left", show_header=False, pad_edge=False
            )
            table.add_column()
            table.add_column(justify="right")
            for key, count in counts.items():
                table.add_row(key, str(count))
            out.print(table)
    if stats.top_fingerprints:
        table = Table(
            title="top failures",
            box=None,
            header_style="bold",
            title_justify="left",
            pad_edge=False,
        )
        for column in ("COUNT", "FINGERPRINT", "KIND", "TYPE", "SAMPLE MESSAGE"):
            table.add_column(column, no_wrap=column != "SAMPLE MESSAGE")
        for group in stats.top_fingerprints:
            table.add_row(
                str(group.count),
                group.fingerprint,
                group.error_kind,
                group.error_type,
                short(group.sample_message, 60),
            )
        out.print(table)
    if stats.cost_lost:
        out.print("spend lost: " + ", ".join(f"{v:g} {k}" for k, v in stats.cost_lost.items()))


def _money(amounts: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(amounts.items())) or "0"


def _provider_lines(guard: dict[str, Any]) -> list[str]:
    """A provider account: breaker, cooldown, limits, and its uncertain submits."""
    breaker = guard["breaker"]
    state = breaker["state"]
    detail = f" ({breaker['reason']})" if state != "closed" and breaker.get("reason") else ""
    lanes = "; ".join(
        f"{lane} {info['in_flight']} in flight (limit {int(info['limit'])})"
        for lane, info in guard["lanes"].items()
    )
    lines = [
        f"provider {guard['account']}: circuit {state}{detail}; "
        f"cooldown {guard['cooldown_remaining']:.0f} s; {lanes}"
    ]
    ledger = guard.get("ledger") or {}
    if ledger.get("uncertain") or ledger.get("blind_resubmits"):
        lines.append(
            f"  uncertain submits: {ledger['uncertain']} ({ledger['cleared']} not charged, "
            f"sent again; {ledger['charged']} maybe charged; {ledger['undecided']} waiting); "
            f"possible duplicate charges (blind resends): {ledger['blind_resubmits']}"
        )
    unattributed = _minus(ledger.get("unexplained") or {}, ledger.get("attributed") or {})
    if unattributed or ledger.get("external"):
        lines.append(
            f"  charged for lost submits, not on any job: {_money(unattributed)}; "
            f"charged by other clients of the account: {_money(ledger.get('external') or {})}"
        )
    return lines


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    diff = {unit: round(a.get(unit, 0.0) - b.get(unit, 0.0), 9) for unit in a}
    return {unit: amount for unit, amount in diff.items() if abs(amount) > 1e-9}


def stats_view(report: dict[str, Any]) -> None:
    """``genqueue stats``: queues x states, DLQ size, provider guards, spend."""
    counts: dict[str, dict[str, int]] = report["queues"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("QUEUE")
    for state in JobState:
        table.add_column(state.value.upper(), justify="right")
    for queue in sorted(counts):
        table.add_row(queue, *(str(counts[queue].get(s.value, 0)) for s in JobState))
    out.print(table if counts else "no jobs")
    out.print(f"dead letter entries: {report['dead_letters']}")
    for guard in report["providers"]:
        for line in _provider_lines(guard):
            out.print(line)
    spend = report["spend"]
    out.print(f"spend: {_money(spend['spent'])}; wasted: {_money(spend['wasted'])}")
    for title in ("by_task", "by_user"):
        rows = spend[title]
        if not rows:
            continue
        t = Table(
            title=f"spend {title.replace('_', ' ')}",
            box=None,
            header_style="bold",
            title_justify="left",
            pad_edge=False,
        )
        for column in ("", "SPENT", "WASTED"):
            t.add_column(column, justify="left" if not column else "right")
        for key, row in sorted(rows.items()):
            t.add_row(key, _money(row["spent"]), _money(row["wasted"]))
        out.print(t)
    if report.get("analytics"):
        analytics_view(report["analytics"])


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def analytics_view(report: dict[str, Any]) -> None:
    """Success and failure rates per task over the window (``genqueue stats``)."""
    seconds = report["window"]
    if seconds >= 86400 and seconds % 86400 == 0:
        span = f"{seconds / 86400:g} d"
    elif seconds >= 3600:
        span = f"{seconds / 3600:g} h"
    else:
        span = f"{seconds / 60:g} min"
    rows = report["by_task"]
    if not rows:
        out.print(f"last {span}: no job ended")
        return
    t = Table(
        title=f"last {span}", box=None, header_style="bold", title_justify="left", pad_edge=False
    )
    for column in ("TASK", "ENDED", "FAILED", "RETRIED", "RETRY OK", "REDRIVEN", "REDRIVE OK"):
        t.add_column(column, justify="left" if column == "TASK" else "right")
    t.add_column("TOP ERROR", overflow="ellipsis", no_wrap=True, max_width=40)
    for task, a in [*sorted(rows.items()), ("all tasks", report["total"])]:
        top = a.get("top_fingerprints") or []
        t.add_row(
            task,
            str(a["succeeded"] + a["dead"] + a["cancelled"]),
            _pct(a["failure_rate"]),
            str(a["retried"]),
            _pct(a["retry_success_rate"]),
            str(a["redriven"]),
            _pct(a["redrive_success_rate"]),
            f"{top[0]['count']}x {top[0]['sample_message']}" if top else "",
        )
    out.print(t)
