"""Commands for jobs: ``enqueue``, ``job show|cancel``, ``jobs list``, ``stats``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from genqueue.app import App
from genqueue.cli.common import (
    AppOpt,
    BackendOpt,
    JsonOpt,
    load_app,
    out,
    parse_duration,
    print_json,
    run_with_app,
)
from genqueue.cli.render import jobs_table, show_job, stats_view
from genqueue.errors import InvalidInput
from genqueue.job import Job
from genqueue.serialization import parse_json_text

job_app = typer.Typer(help="Inspect or cancel one job.", no_args_is_help=True)
jobs_app = typer.Typer(help="List jobs.", no_args_is_help=True)


def enqueue(
    task: Annotated[str, typer.Argument(help="Registered task name, e.g. demo.generate.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Job data as JSON.")] = "null",
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
    payload = parse_json_text(data, field="data")
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


@job_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show a job: fields, every attempt, the last error's stack."""
    app = load_app(app_path, backend)
    job = run_with_app(app, lambda a: a.get(job_id))
    if json:
        print_json(job.to_public())
    else:
        show_job(job)


@job_app.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (stored on the job).")
    ] = "cancelled from the CLI",
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Cancel a job that has not finished (a running one stops at its next heartbeat)."""
    app = load_app(app_path, backend)
    job = run_with_app(app, lambda a: a.cancel(job_id, reason))
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
    limit: Annotated[int, typer.Option("--limit", "-n", help="Page size (1-1000).")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue from a previous page.")
    ] = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    app = load_app(app_path, backend)
    page = run_with_app(
        app,
        lambda a: a.queue.list(
            state=state or None, queue=queue, task=task, user_id=user, cursor=cursor, limit=limit
        ),
    )
    if json:
        print_json({"items": [j.to_public() for j in page.items], "next_cursor": page.next_cursor})
        return
    if not page.items:
        out.print("no jobs match")
        return
    out.print(jobs_table(page.items))
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


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
    """Jobs per queue and state, the DLQ, provider breakers and cooldowns, spend, and
    success and failure rates over a window."""
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
        stats_view(result)
