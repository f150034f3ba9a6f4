"""``genqueue demo``: a batch of generation jobs, a live progress bar, a summary."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genqueue import demo
from genqueue.app import App
from genqueue.cli.common import BackendOpt, out
from genqueue.settings import backend_url


def demo_command(
    jobs: Annotated[int, typer.Option("--jobs", "-n", help="How many jobs to run.")] = 200,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Jobs run at once.")] = 20,
    backend: BackendOpt = None,
) -> None:
    """Run simulated generation jobs that fail in every way, and summarise what happened."""
    if not 1 <= jobs <= 100_000:
        raise typer.BadParameter("must be between 1 and 100000", param_hint="--jobs")
    logging.getLogger("genqueue").setLevel(logging.CRITICAL)  # the progress bar tells the story
    app = App(backend_url(backend))
    demo.register(app)
    out.print(f"genqueue demo: {jobs} simulated generation jobs on {app.backend.url}")
    with Progress(
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as progress:
        bar = progress.add_task("jobs", total=jobs)

        def advance(done: int, total: int) -> None:
            progress.update(bar, completed=done)

        async def main() -> demo.DemoSummary:
            async with app:
                return await demo.run_demo(
                    app, count=jobs, concurrency=concurrency, on_progress=advance
                )

        summary = asyncio.run(main())
    _print_summary(summary)


def _print_summary(summary: demo.DemoSummary) -> None:
    table = Table(
        title="summary", box=None, title_justify="left", show_header=False, pad_edge=False
    )
    table.add_column()
    table.add_column(justify="right")
    table.add_row("jobs", str(summary.total))
    table.add_row("completed", str(summary.states.get("completed", 0)))
    table.add_row("  after a retry", str(summary.completed_after_retry))
    table.add_row("retried (at least once)", str(summary.retried))
    table.add_row("dead-lettered", str(summary.states.get("dead", 0)))
    for kind, count in sorted(summary.dead_by_kind.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {kind}", str(count))
    other = summary.total - summary.states.get("completed", 0) - summary.states.get("dead", 0)
    if other:
        table.add_row("not finished", str(other))
    table.add_row("spend (simulated)", f"${summary.spend_usd:.2f}")
    table.add_row("time", f"{summary.seconds:.1f} s")
    out.print(table)
    out.print(
        "next: [bold]genqueue dlq list[/bold] (what failed), "
        "[bold]genqueue dlq stats[/bold] (grouped), [bold]genqueue dlq show JOB_ID[/bold], "
        "[bold]genqueue dlq retry --all --kind server[/bold]"
    )
