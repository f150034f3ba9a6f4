"""``genqueue demo``: PixelLab generation jobs through genqueue, with a live progress bar.

By default it starts the fake PixelLab server in this process with a realistic fault mix
(no network, no key). With ``--provider pixellab`` and ``PIXELLAB_API_KEY`` set it runs a
few cheap jobs against the real API instead.

The fake server, the PixelLab client and pydantic are imported when the demo runs, not
when the command line starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from genqueue.cli.common import BackendOpt, out
from genqueue.errors import ConfigError
from genqueue.humanize import amount, plural

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.providers.fake_pixellab import FakePixelLab
    from genqueue.providers.pixellab import PixelLab, PixelLabSettings
    from genqueue.providers.pixellab import demo as pixellab_demo
    from genqueue.queue import JobRequest


def demo_command(
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-n", help="How many jobs (default 200; 6 on the real API)."),
    ] = None,
    provider: Annotated[
        str, typer.Option("--provider", help="fake (default) or pixellab (needs PIXELLAB_API_KEY).")
    ] = "fake",
    workers: Annotated[int, typer.Option("--workers", help="Workers to run in this process.")] = 2,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Jobs each worker runs at once.")
    ] = 12,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the sprites are written.")
    ] = Path("genqueue-output"),
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the job mix and of the fake's faults.")
    ] = 7,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Serve the dashboard while the demo runs (until Ctrl-C)."),
    ] = False,
    port: Annotated[int, typer.Option("--port", "-p", help="Dashboard port (--serve).")] = 8000,
    backend: BackendOpt = None,
) -> None:
    """Generate pixel art; account for every job.

    Runs generation jobs through genqueue and summarises what happened to each.
    """
    if provider not in ("fake", "pixellab"):
        raise ConfigError(f"unknown --provider {provider!r}: use fake or pixellab")
    real = provider == "pixellab"
    count = jobs if jobs is not None else (6 if real else 200)
    if not 1 <= count <= 100_000:
        raise typer.BadParameter("must be between 1 and 100000", param_hint="--jobs")
    if real and not os.environ.get("PIXELLAB_API_KEY"):
        raise ConfigError("--provider pixellab needs PIXELLAB_API_KEY in the environment")
    from genqueue.app import App
    from genqueue.cli.urls import cli_backend_url
    from genqueue.providers.pixellab import demo as pixellab_demo
    from genqueue.providers.pixellab import register
    from genqueue.retry import RetryPolicy
    from genqueue.settings import backend_url

    if not 0 <= port <= 65535:
        raise typer.BadParameter("must be between 0 and 65535", param_hint="--port")
    # memory:// is allowed: the demo's workers run in this process.
    url = cli_backend_url(backend_url(backend), allow_memory=True)
    with ExitStack() as stack:
        dashboard = _dashboard(stack, url, port) if serve else None
        stack.enter_context(_quiet(logging.getLogger("genqueue")))  # the bar tells the story
        fake = None if real else stack.enter_context(_fake_server(seed))
        settings = _settings(fake, output)
        app = App(url, retry=RetryPolicy(base_delay=1.0, max_delay=30.0))
        pixellab = register(app, settings)
        where = f"a fake PixelLab at {fake.base_url}" if fake else "the real PixelLab API"
        jobs_text = plural(count, "generation job")
        out.print(f"genqueue demo: {jobs_text} on {app.backend.url}")
        out.print(f"  against {where}")
        requests = pixellab_demo.batch(count, seed=seed, real=real)
        report = _run(app, pixellab, requests, workers, concurrency)
        fake_stats = fake.stats() if fake else None
        ok = _print(report, fake_stats)
        if dashboard is not None:
            from genqueue.cli.demo_serve import wait_for_interrupt

            out.print(f"the dashboard is still at {dashboard}: press Ctrl-C to stop")
            wait_for_interrupt()
    if not ok:
        raise typer.Exit(1)  # a lost job or a double charge is a bug, not a demo result


def _dashboard(stack: ExitStack, url: str, port: int) -> str:
    from genqueue.cli.demo_serve import DemoDashboard

    server = DemoDashboard(url, port)
    login = server.start()
    stack.callback(server.stop)
    out.print(f"dashboard: [bold]{login}[/bold]  (admin token: {server.token})")
    return login


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fake_server(seed: int) -> FakePixelLab:
    from genqueue.providers.fake_pixellab import DEFAULT_TOKEN, FakeOptions, FakePixelLab

    return FakePixelLab(FakeOptions.demo(seed=seed, tokens={DEFAULT_TOKEN: "demo"}))


def _settings(fake: FakePixelLab | None, output: Path) -> PixelLabSettings:
    from genqueue.providers.fake_pixellab import DEFAULT_TOKEN
    from genqueue.providers.guard import BreakerSettings
    from genqueue.providers.ledger import LedgerSettings
    from genqueue.providers.pixellab import PixelLabSettings

    if fake is None:
        return PixelLabSettings(output_dir=output)  # the real API: key from the environment
    return PixelLabSettings(
        api_key=DEFAULT_TOKEN,
        base_url=fake.base_url,
        output_dir=output,
        poll_interval=0.3,
        lost_grace=10.0,
        breaker=BreakerSettings(cooldown=3.0, auth_cooldown=3.0, max_cooldown=10.0),
        # The demo's fake settles charges within a second, so readings can come quickly.
        ledger=LedgerSettings(settlement_lag=1.5, reconcile_after=3.0, inflight_grace=5.0),
    )


def _run(
    app: App, pixellab: PixelLab, requests: list[JobRequest], workers: int, concurrency: int
) -> pixellab_demo.DemoReport:
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from genqueue.providers.pixellab import demo as pixellab_demo

    columns = (TextColumn("[bold]jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out) as bar:
        task = bar.add_task("jobs", total=len(requests))

        async def main() -> pixellab_demo.DemoReport:
            async with app:
                try:
                    return await pixellab_demo.run(
                        app,
                        pixellab,
                        requests,
                        workers=workers,
                        concurrency=concurrency,
                        on_progress=lambda done, total: bar.update(task, completed=done),
                    )
                finally:
                    await pixellab.aclose()

        return asyncio.run(main())


def _money(amounts: dict[str, float]) -> str:
    usd = amounts.get("usd", 0.0)
    generations = amounts.get("generations", 0.0)
    return f"${usd:.2f} ({amount(generations, 'generations')})"


def _print(report: pixellab_demo.DemoReport, fake: dict[str, Any] | None) -> bool:
    """Print the summary; False when a job is missing or the fake charged one twice."""
    from rich.table import Table

    table = Table(
        title="summary", box=None, title_justify="left", show_header=False, pad_edge=False
    )
    table.add_column()
    table.add_column(justify="right")
    completed, dead = report.states.get("completed", 0), report.states.get("dead", 0)
    rows = [
        ("jobs", report.total),
        ("completed", completed),
        ("  after a retry", report.completed_after_retry),
        ("  images written", report.images),
        ("retried (at least once)", report.retried),
        ("resumed a remote job instead of resubmitting", report.resumed),
        ("resent once the balance showed no charge", report.reconciled),
        ("waited on a rate limit (no retry spent)", report.rate_limited),
        ("dead-lettered", dead),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    for kind, n in sorted(report.dead_by_kind.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {kind}", str(n))
    other = report.total - completed - dead
    if other:
        table.add_row("not finished", str(other))
    table.add_row("spend", _money(report.spent))
    table.add_row("  wasted (failed attempts, dead jobs)", _money(report.wasted))
    table.add_row("  attempts that may have been billed, cost unknown", str(report.maybe_billed))
    table.add_row("time", f"{report.seconds:.1f} s")
    out.print(table)
    twice = 0
    if fake is not None:
        submits = sum(fake["submits_by_operation"].values())
        twice = sum(1 for n in fake["charges_by_client_job"].values() if n > 1)
        out.print(
            f"fake PixelLab: {plural(submits, 'submit')}, {plural(fake['charges'], 'charge')} "
            f"(${fake['total_charged_usd']:.2f}), {plural(twice, 'job')} charged twice"
        )
        out.print(
            f"  answered 429: {fake['errors']['429']}, 5xx: {fake['errors']['5xx']}; "
            f"connections dropped: {fake['dropped_connections']}"
        )
    status = "every job accounted for" if report.accounted else "[red]SOME JOBS ARE MISSING[/red]"
    out.print(f"{status}; sprites in {report.output_dir}/")
    if twice:
        out.print(f"[red]{plural(twice, 'job')} charged twice: please report this as a bug[/red]")
    out.print("next: [bold]genqueue dlq list[/bold]      what failed")
    out.print("      [bold]genqueue dlq stats[/bold]     the failures, grouped")
    out.print("      [bold]genqueue dlq show ID[/bold]   one of them (an id's first characters do)")
    out.print("      [bold]genqueue stats[/bold]         spend, breakers")
    out.print("      [bold]genqueue serve[/bold]         the dashboard and HTTP API")
    return report.accounted and not twice
