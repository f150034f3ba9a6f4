"""``genqueue alerts list|test|enable``: alerts, and whether notifications reach targets.

``list`` shows the active alerts and the recent resolved ones, as the evaluating worker
stored them in the backend (``genqueue.observability.alerts``).

Targets come from the settings file (``--settings FILE`` or ``GENQUEUE_SETTINGS``, tables
``[[notify.targets]]``) and the environment (``GENQUEUE_WEBHOOK_URL`` with
``GENQUEUE_WEBHOOK_SECRET``, ``GENQUEUE_SLACK_WEBHOOK_URL``). ``test`` sends one test
notification to each, one attempt each so the answer comes at once, prints what each
answered and exits 1 if any failed. ``enable`` clears the flag a target gets when it
answers 410 Gone. URLs are shown redacted and secrets never.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer

from genqueue.cli.common import (
    AppOpt,
    BackendOpt,
    JsonOpt,
    ago,
    fail_line,
    load_app,
    out,
    print_json,
    run_with_app,
)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from genqueue.app import App
    from genqueue.observability.alerts.state import AlertList, AlertRecord
    from genqueue.observability.notify.model import DeliveryResult

# The notification modules (and the webhook library) load only when a command runs:
# ``genqueue --help`` must stay fast. A test keeps this name equal to the settings'.
SETTINGS_ENV = "GENQUEUE_SETTINGS"

alerts_app = typer.Typer(
    help="Alerts and where notifications go.", no_args_is_help=True, rich_markup_mode=None
)

SettingsOpt = Annotated[
    str | None,
    typer.Option(
        "--settings",
        envvar=SETTINGS_ENV,
        help="Settings file (TOML) with [[notify.targets]].",
        show_default=False,
    ),
]


def _no_targets() -> str:
    from genqueue.observability.notify.config import (
        SLACK_URL_ENV,
        WEBHOOK_SECRET_ENV,
        WEBHOOK_URL_ENV,
    )

    return (
        "no notification targets are configured: set "
        f"{WEBHOOK_URL_ENV} and {WEBHOOK_SECRET_ENV}, or {SLACK_URL_ENV}, "
        f"or add [[notify.targets]] to a settings file (--settings or {SETTINGS_ENV})"
    )


@alerts_app.command("list")
def list_command(
    limit: Annotated[
        int, typer.Option("--limit", min=0, max=1000, help="Resolved alerts to show.")
    ] = 20,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Active and recent alerts, with their values.

    Rule, severity, state, since, last value, threshold.
    """
    from genqueue.observability.alerts.state import list_alerts

    async def go(app: App) -> tuple[AlertList, float]:
        return await list_alerts(app.backend, recent=limit), await app.backend.time()

    listing, now = run_with_app(load_app(app_path, backend), go)
    if json:
        print_json(listing.to_public())
        return
    if listing.evaluated_at is None:
        out.print("no alert evaluation yet (workers evaluate alerts unless they are off)")
        return
    out.print(f"evaluated {ago(listing.evaluated_at, now)} by {listing.evaluator}")
    if not listing.active and not listing.recent:
        out.print("no alerts")
        return
    out.print(_alerts_table([*listing.active, *listing.recent], now))


@alerts_app.command("test")
def send_test_command(
    settings: SettingsOpt = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Send a test notification to every target.

    Exits 1 if any failed.
    """
    from genqueue.observability.notify.config import NotifySettings
    from genqueue.observability.notify.delivery import RetrySchedule
    from genqueue.observability.notify.dispatch import Notifications

    config = NotifySettings.load(settings)
    if not config.targets:
        fail_line(_no_targets())
        raise typer.Exit(1)
    # One attempt: an operator testing a target wants its answer now, not after backoff.
    once = dataclasses.replace(
        config, schedule=RetrySchedule(delays=(), timeout=config.schedule.timeout)
    )

    async def go(app: App) -> list[DeliveryResult]:
        async with Notifications(once, backend=app.backend, clock=app.clock) as notifications:
            return await notifications.send_test()

    results = [r for r in run_with_app(load_app(app_path, backend), go) if r.type != "log"]
    urls = {t.name: t.shown_url for t in config.targets}
    if json:
        print_json({"results": [{**r.to_dict(), "url": urls[r.target]} for r in results]})
    else:
        out.print(_table(results, urls))
    if any(r.failed for r in results):
        raise typer.Exit(1)


@alerts_app.command("enable")
def enable_command(
    target: Annotated[str, typer.Argument(help="The target's name in the settings.")],
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Send to a target again after a 410 Gone.

    Fix its URL first.
    """
    from genqueue.observability.notify.disabled import DisabledTargets

    async def go(app: App) -> bool:
        return await DisabledTargets(app.backend, app.clock).enable(target)

    was_disabled = run_with_app(load_app(app_path, backend), go)
    result: dict[str, Any] = {"target": target, "was_disabled": was_disabled}
    if json:
        print_json(result)
    elif was_disabled:
        out.print(f"{target}: enabled again")
    else:
        out.print(f"{target}: was not disabled")


def _alerts_table(records: list[AlertRecord], now: float) -> RenderableType:
    from genqueue.cli.columns import Col, one_line, table
    from genqueue.observability.alerts.rules import Unit, show

    columns = (
        Col("RULE", max_width=28),
        Col("SEVERITY"),
        Col("STATE"),
        Col("SINCE", needs=100),
        Col("VALUE", needs=100, justify="right"),
        Col("THRESHOLD", needs=120, justify="right"),
        Col("SUMMARY", flexible=True),
    )
    rows = []
    for r in records:
        unit = Unit(r.unit)
        state = r.state if r.resolved_at is None else f"resolved {ago(r.resolved_at, now)}"
        rows.append(
            {
                "RULE": r.rule,
                "SEVERITY": r.severity,
                "STATE": state,
                "SINCE": ago(r.fired_at, now),
                "VALUE": show(r.value, unit),
                "THRESHOLD": show(r.threshold, unit),
                "SUMMARY": one_line(r.summary),
            }
        )
    return table(columns, rows)


def _table(results: list[DeliveryResult], urls: dict[str, str]) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TARGET", "TYPE", "URL", "RESULT", "DETAIL"):
        table.add_column(column)
    for r in results:
        table.add_row(r.target, r.type, urls[r.target], r.outcome.value, _detail(r))
    return table


def _detail(result: DeliveryResult) -> str:
    if result.ok:
        return f"HTTP {result.status_code}"
    return result.error or (f"HTTP {result.status_code}" if result.status_code else "")
