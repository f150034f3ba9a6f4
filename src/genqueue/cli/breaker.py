"""``genqueue breaker list|reset``: the circuit breakers of provider accounts.

Accounts are named ``provider:HASH`` (a hash of the API key, never the key). ``reset``
closes a breaker at once, for when the operator knows the cause is fixed (a new key, a
paid invoice) and does not want to wait for the next probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from genqueue.cli.common import AppOpt, BackendOpt, JsonOpt, load_app, out, print_json, run_with_app

if TYPE_CHECKING:
    from genqueue.app import App

breaker_app = typer.Typer(
    help="Circuit breakers of provider accounts.", no_args_is_help=True, rich_markup_mode=None
)


@breaker_app.command("list")
def list_command(
    backend: BackendOpt = None, app_path: AppOpt = None, json: JsonOpt = False
) -> None:
    """Every account's breaker, why, how long."""
    from genqueue.providers.breaker import list_breakers

    rows = run_with_app(load_app(app_path, backend), list_breakers)
    if json:
        print_json(rows)
        return
    if not rows:
        out.print("no provider accounts have been used on this backend")
        return
    from genqueue.cli.columns import Col, table
    from genqueue.humanize import seconds

    columns = (Col("ACCOUNT"), Col("STATE"), Col("OPEN FOR"), Col("REASON", flexible=True))
    shown = [
        {
            "ACCOUNT": row["account"],
            "STATE": row["state"],
            "OPEN FOR": seconds(row["open_for"]) if row["state"] == "open" else "-",
            "REASON": row["reason"] or "",
        }
        for row in rows
    ]
    out.print(table(columns, shown))


@breaker_app.command("reset")
def reset_command(
    account: Annotated[
        str | None,
        typer.Argument(help="Account (a unique prefix will do); all accounts if omitted."),
    ] = None,
    backend: BackendOpt = None,
    app_path: AppOpt = None,
    json: JsonOpt = False,
) -> None:
    """Close a breaker (or all) now.

    Does not wait for a probe job.
    """
    from genqueue.providers.breaker import reset_breaker

    async def go(app: App) -> list[str]:
        return await reset_breaker(app, account)

    closed = run_with_app(load_app(app_path, backend), go)
    result: dict[str, Any] = {"closed": closed}
    if json:
        print_json(result)
    elif closed:
        out.print("closed: " + ", ".join(closed))
    else:
        out.print("no breaker was open")
