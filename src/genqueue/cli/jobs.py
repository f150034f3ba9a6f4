"""Commands for jobs: ``enqueue``, ``job show|cancel``, ``jobs list``, ``stats``.

Ids may be given whole or as a unique prefix (``cli.ids``). ``enqueue --data`` takes JSON
inline, ``@file.json`` or ``-`` (standard input).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from genqueue.cli.common import (
    AppOpt,
    BackendOpt,
    JsonOpt,
    load_app,
    more_pages,
    out,
    parse_duration,
    parse_when,
    print_json,
    run_with_app,
)
from genqueue.errors import InvalidInput

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.job import Job

job_app = typer.Typer(
    help="Inspect or cancel one job.", no_args_is_help=True, rich_markup_mode=None
)
jobs_app = typer.Typer(help="List jobs.", no_args_is_help=True, rich_markup_mode=None)


def enqueue(
    task: Annotated[str, typer.Argument(help="Registered task name, e.g. demo.generate.")],
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="Job data: JSON, @file.json, or - to read standard input."
        ),
    ] = "null",
    user: Annotated[str | None, typer.Option("--user", help="User the job belongs to.")] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", help="Seconds to wait before it runs.")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option("--max-retries", help="Retries allowed (0-1000).")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Queue (default: the task's).")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Dedupe key.")
    ] = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Enqueue one job and print its id."""
    payload = read_data(data)
    app = load_app(app_path, backend)

    async def go(app: App) -> Job:
        return await app.enqueue(
            task,
            payload,
            user_id=user,
            delay=delay,
            max_retries=max_retries,
            queue=queue,
            idempotency_key=idempotency_key,
        )

    job = run_with_app(app, go)
    if json:
        print_json(job.to_public())
    else:
        out.print(f"{job.id}  {job.state.value}  {job.task} on queue {job.queue}")


def read_data(data: str) -> Any:
    """``--data``: inline JSON, ``@path`` (a file) or ``-`` (standard input)."""
    from genqueue.serialization import parse_json_text

    if data == "-":
        return parse_json_text(sys.stdin.read(), field="data (standard input)")
    if not data.startswith("@"):
        return parse_json_text(data, field="data")
    path = Path(data[1:]).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"--data {data}: no such file", field="data") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(f"--data {data}: cannot read it ({reason})", field="data") from None
    return parse_json_text(text, field=f"data in {path}")


@job_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="The job's id (a unique prefix will do).")],
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show a job, every attempt, the last stack."""
    from genqueue.cli.ids import resolve

    app = load_app(app_path, backend)

    async def go(app: App) -> Job:
        return await app.get(await resolve(app, job_id))

    job = run_with_app(app, go)
    if json:
        print_json(job.to_public())
    else:
        from genqueue.cli.render import show_job

        show_job(job)


@job_app.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id (a unique prefix will do).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (stored on the job).")
    ] = "cancelled from the CLI",
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Cancel a job that has not finished.

    A running job stops at its next heartbeat.
    """
    from genqueue.cli.ids import resolve

    app = load_app(app_path, backend)

    async def go(app: App) -> Job:
        return await app.cancel(await resolve(app, job_id), reason)

    job = run_with_app(app, go)
    if json:
        print_json(job.to_public())
    else:
        out.print(f"{job.id}  cancelled")


@jobs_app.command("list")
def jobs_list(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", help="queued, scheduled, active, retrying, completed, dead, cancelled."
        ),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q")] = None,
    task: Annotated[str | None, typer.Option("--task")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created at or after (ISO time or age like 24h).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Created before (ISO time or age like 1h).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Page size (1-1000).")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue from a previous page.")
    ] = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    created = {"since": parse_when(since, "since"), "until": parse_when(until, "until")}
    app = load_app(app_path, backend)
    page = run_with_app(
        app,
        lambda a: a.queue.list(
            state=state or None,
            queue=queue,
            task=task,
            user_id=user,
            cursor=cursor,
            limit=limit,
            **created,
        ),
    )
    if json:
        print_json({"items": [j.to_public() for j in page.items], "next_cursor": page.next_cursor})
        return
    if not page.items:
        out.print("no jobs match")
        return
    from genqueue.cli.render import jobs_table

    out.print(jobs_table(page.items))
    if page.next_cursor:
        more_pages(page.next_cursor)


def stats(
    window: Annotated[
        str,
        typer.Option(
            "--window", help="Analytics window: retry and redrive success, failure rates (1h, 1d)."
        ),
    ] = "1h",
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Jobs per state, DLQ, providers, spend, rates.

    Jobs per queue and state, the DLQ, provider breakers and cooldowns, spend, and
    success and failure rates over a window.
    """
    from genqueue.analytics import MAX_WINDOW
    from genqueue.providers.guard import all_guard_states
    from genqueue.stats import spend_report

    seconds = parse_duration(window, "window")
    if not 60 <= seconds <= MAX_WINDOW:
        raise InvalidInput("--window must be between 1m and 7d", field="window")
    app = load_app(app_path, backend)

    async def go(app: App) -> dict[str, Any]:
        return {
            "queues": await app.backend.counts(),
            "dead_letters": await app.dlq.count(),
            "providers": await all_guard_states(app),
            "spend": await spend_report(app),
            "analytics": (await app.analytics(seconds)).to_dict(),
        }

    result = run_with_app(app, go)
    if json:
        print_json(result)
    else:
        from genqueue.cli.render import stats_view

        stats_view(result)
