"""``genqueue worker``: run a worker in the foreground.

With ``--burst`` it stops once nothing is running or due, after waiting for retries and
snoozes due within ``--burst-horizon`` seconds, and says what it left.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from genqueue.cli.common import AppOpt, BackendOpt, load_app, out
from genqueue.errors import InvalidInput
from genqueue.humanize import number, plural, seconds


def worker(
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Queue to work (repeat; default: every task's queue)."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Jobs run at once.")] = 10,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once nothing is running or due.")
    ] = False,
    burst_horizon: Annotated[
        float,
        typer.Option(
            "--burst-horizon",
            help="With --burst: wait for retries and snoozes due within this many seconds.",
        ),
    ] = 5.0,
    lease: Annotated[
        float, typer.Option("--lease", help="Lease seconds, renewed by heartbeats.")
    ] = 30.0,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds running jobs get on shutdown.")
    ] = 30.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log one JSON object per line.")
    ] = False,
    skip_integrity_check: Annotated[
        bool,
        typer.Option(
            "--skip-integrity-check",
            help="Start without checking the storage for damage (SQLite PRAGMA quick_check "
            "reads the whole file: seconds on a large one); damage met later still stops "
            "the worker.",
        ),
    ] = False,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT.

    Shutdown is graceful; a second signal releases running jobs at once.
    """
    import asyncio

    from genqueue.events import configure_logging
    from genqueue.settings import WorkerSettings
    from genqueue.task import check_queue_name
    from genqueue.worker import Worker

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    for name in queue or ():
        check_queue_name(name)
    if not 0 <= burst_horizon <= 86400:
        raise InvalidInput("--burst-horizon must be between 0 and 86400 seconds")
    settings = WorkerSettings(
        concurrency=concurrency,
        lease_seconds=lease,
        shutdown_grace=grace,
        integrity_check=not skip_integrity_check,
    )
    app = load_app(app_path, backend, worker=True)
    configure_logging(level, json=log_json)
    runner = Worker(
        app,
        queues=queue,
        settings=settings,
        burst=burst,
        burst_horizon=burst_horizon,
        handle_signals=True,
    )

    async def main() -> None:
        async with app:
            await runner.run()

    if not log_json:
        out.print(
            f"worker {runner.id} on {app.backend.url}: queues {', '.join(runner.queues)}, "
            f"concurrency {concurrency}{', burst' if burst else ''}"
        )
    asyncio.run(main())
    if not log_json:
        done = ", ".join(f"{k} {v}" for k, v in sorted(runner.stats.items())) or "nothing to do"
        out.print(f"worker stopped: {done}")
        left = runner.burst_left
        if left is not None and left.count and left.next_in is not None:
            out.print(
                f"left {plural(left.count, 'job')} scheduled later than "
                f"{number(burst_horizon)} s: next in {seconds(left.next_in)} "
                "(run a worker without --burst, or raise --burst-horizon)"
            )
