"""``genqueue worker``: run a worker in the foreground.

With ``--burst`` it stops once nothing is running or due, after waiting for retries and
snoozes due within ``--burst-horizon`` seconds, and says what it left.

Unless ``--no-alerts``, ``GENQUEUE_ALERTS=off`` or ``[alerts] enabled = false`` in the
settings file, the worker takes part in alert evaluation (one worker of all evaluates;
see ``genqueue.observability.alerts``) with the notification targets of the same file.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from genqueue.cli.alerts import SettingsOpt
from genqueue.cli.common import AppOpt, BackendOpt, load_app, out
from genqueue.errors import InvalidInput
from genqueue.humanize import number, plural, seconds

if TYPE_CHECKING:
    from genqueue.app import App
    from genqueue.burst import Left
    from genqueue.observability.alerts import AlertEvaluator
    from genqueue.observability.metrics import Metrics
    from genqueue.settings import WorkerSettings


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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics endpoint binds.")
    ] = "127.0.0.1",
    no_alerts: Annotated[
        bool,
        typer.Option(
            "--no-alerts",
            help="Do not take part in alert evaluation (also GENQUEUE_ALERTS=off, or "
            "[alerts] enabled = false in the settings file).",
        ),
    ] = False,
    settings_file: SettingsOpt = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT.

    Shutdown is graceful; a second signal releases running jobs at once.
    """
    import asyncio

    from genqueue.events import configure_logging
    from genqueue.settings import WorkerSettings
    from genqueue.worker import Worker

    level = _check(log_level, queue, burst_horizon)
    settings = WorkerSettings(
        concurrency=concurrency,
        lease_seconds=lease,
        shutdown_grace=grace,
        integrity_check=not skip_integrity_check,
    )
    app = load_app(app_path, backend, worker=True)
    alerts = None if no_alerts else alert_evaluator(app, settings_file)
    if settings_file:
        _install_auto_redrive(app, settings_file)
    configure_logging(level, json=log_json)
    runner = Worker(
        app,
        queues=queue,
        settings=settings,
        burst=burst,
        burst_horizon=burst_horizon,
        handle_signals=True,
        alerts=alerts.run if alerts is not None else None,
    )

    async def main() -> None:
        async with app:
            if metrics_port is None:
                await runner.run()
                return
            metrics = _metrics(app, settings)
            port = metrics.serve(metrics_port, metrics_host)
            out.print(f"metrics at http://{metrics_host}:{port}/metrics")
            metrics.install()
            refresher = asyncio.create_task(metrics.run(), name="genqueue-metrics")
            try:
                await runner.run()
            finally:
                refresher.cancel()
                metrics.close()

    if not log_json:
        out.print(
            f"worker {runner.id} on {app.backend.url}: queues {', '.join(runner.queues)}, "
            f"concurrency {concurrency}{', burst' if burst else ''}, "
            f"alerts {'on' if alerts is not None else 'off'}"
        )
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise typer.BadParameter("must be between 0 and 65535", param_hint="--metrics-port")
    asyncio.run(main())
    if not log_json:
        done = ", ".join(f"{k} {v}" for k, v in sorted(runner.stats.items())) or "nothing to do"
        out.print(f"worker stopped: {done}")
        _say_what_is_left(runner.burst_left, burst_horizon)


def _check(log_level: str, queues: list[str] | None, burst_horizon: float) -> int:
    """The log level, once the options are known to be valid (one clear line if not)."""
    from genqueue.task import check_queue_name

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    for name in queues or ():
        check_queue_name(name)  # the rule the API applies
    if not 0 <= burst_horizon <= 86400:
        raise InvalidInput("--burst-horizon must be between 0 and 86400 seconds")
    return level


def _say_what_is_left(left: Left | None, horizon: float) -> None:
    if left is not None and left.count and left.next_in is not None:
        out.print(
            f"left {plural(left.count, 'job')} scheduled later than {number(horizon)} s: "
            f"next in {seconds(left.next_in)} (run a worker without --burst, or raise "
            "--burst-horizon)"
        )


def alert_evaluator(app: App, settings_file: str | None) -> AlertEvaluator | None:
    """The evaluator this worker runs, from the settings file and environment; None when
    alerts are off there. Bad settings raise ``ConfigError`` before the worker starts."""
    from genqueue.observability.alerts import AlertEvaluator, AlertSettings
    from genqueue.observability.notify import Notifications, NotifySettings
    from genqueue.providers.breaker import list_breakers

    config = AlertSettings.load(settings_file)
    if not config.enabled:
        return None
    notifications = Notifications.for_app(app, NotifySettings.load(settings_file))
    return AlertEvaluator(
        app, config, notifier=notifications, breakers=list_breakers, owns_notifier=True
    )


def _metrics(app: App, settings: WorkerSettings) -> Metrics:
    from genqueue.observability.metrics import Metrics
    from genqueue.providers.metrics import provider_readings

    return Metrics(app, sources=[provider_readings], worker_stale_after=settings.lease_seconds)


def _install_auto_redrive(app: App, path: str) -> None:
    """``[autoredrive]`` of the settings file: ``interval`` and ``[[autoredrive.policies]]``."""
    from genqueue.autoredrive import AutoRedrivePolicy, AutoRedriver
    from genqueue.observability.notify.config import read_settings_file
    from genqueue.providers.breaker import no_breaker_open

    section = read_settings_file(path).get("autoredrive") or {}
    policies = [AutoRedrivePolicy.from_mapping(raw) for raw in section.get("policies", [])]
    if not policies:
        return

    async def healthy() -> bool:
        return await no_breaker_open(app)

    interval = float(section.get("interval", 30.0))
    AutoRedriver(app, policies, healthy=healthy, interval=interval).install()
    names = ", ".join(p.name for p in policies)
    out.print(f"auto-redrive policies: {names} (every {interval:g} s)")
