"""What every command shares: finding the app, options, parsing times, printing output.

The app is found by import path (``--app module:obj`` or ``GENQUEUE_APP``); without one
the built-in app (demo tasks and built-in providers) is used. ``--backend URL`` (or
``GENQUEUE_BACKEND``) points it at a storage, checked first (``cli.urls``). Commands print
tables for people and, with ``--json``, stable JSON for scripts (field names documented in
the README).

Start-up time matters (``genqueue --help`` should feel instant), so this module and every
command module import the library where a command uses it, not at the top.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from genqueue import serialization
from genqueue.errors import (
    BackendError,
    ConfigError,
    GenqueueError,
    InvalidInput,
    StorageCorrupt,
)

if TYPE_CHECKING:
    from genqueue.app import App

T = TypeVar("T")
# The names in genqueue.settings, without importing it (and the classifier) for --help.
BACKEND_ENV = "GENQUEUE_BACKEND"
APP_ENV = "GENQUEUE_APP"
#: Width of piped output, unless COLUMNS says otherwise.
PIPE_WIDTH = 240

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def configure_output() -> None:
    """Size the output for this run: ``COLUMNS`` if set, else the terminal, else wide.

    Piped output is read by grep and scripts, so it is not cut at 80 columns; tables
    still show short ids (``--json`` has the full values).
    """
    columns = os.environ.get("COLUMNS", "")
    out.width = (
        int(columns)
        if columns.isdigit() and int(columns) > 0
        else (out.size.width if out.is_terminal else PIPE_WIDTH)
    )


def fail_line(message: str) -> None:
    """One error line on stderr, never wrapped or styled."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")


BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        envvar=BACKEND_ENV,
        help="Backend URL (sqlite:///genqueue.db, redis://...).",
        show_default=False,
    ),
]
AppOpt = Annotated[
    str | None,
    typer.Option(
        "--app", "-A", envvar=APP_ENV, help="Your app, as module:attribute.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def load_app(
    app_path: str | None, backend: str | None, *, worker: bool = False, allow_memory: bool = False
) -> App:
    """Import the user's app (or build the built-in one) and point it at ``backend``.

    The URL it ends up with (``backend``, else the app's own) is checked first; see
    ``cli.urls`` (a worker keeps Redis's patient defaults, other commands fail fast).
    """
    from genqueue.app import App
    from genqueue.cli.urls import cli_backend_url, impatient_backend

    if backend:
        backend = cli_backend_url(backend, allow_memory=allow_memory)
    if app_path:
        obj = _import(app_path)
    else:
        from genqueue.builtin import create_app

        obj = create_app
    if callable(obj) and not isinstance(obj, App):
        obj = obj()
    if not isinstance(obj, App):
        raise ConfigError(f"{app_path} is a {type(obj).__name__}, not a genqueue.App")
    url = backend or cli_backend_url(obj.backend.url, allow_memory=allow_memory)
    impatient = None if worker else impatient_backend(url, obj.clock)
    if impatient is not None:
        obj.use_backend(impatient)
    elif url != obj.backend.url:
        obj.use_backend(url)
    return obj


def _import(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"invalid app path {path!r}: use module:attribute, e.g. myproject.jobs:app"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for --app: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None


def run_with_app(app: App, fn: Callable[[App], Awaitable[T]]) -> T:
    """Open the app, run ``fn(app)`` on a fresh event loop, close the app.

    The library's warnings are for workers and logs (a Redis without persistence, a call
    being retried): a command says what went wrong in its one error line instead.
    """

    async def main() -> T:
        try:
            await app.open()
        except StorageCorrupt:
            raise
        except (BackendError, OSError, ConnectionError) as exc:
            raise _unreachable(app, exc) from exc
        except Exception as exc:
            if isinstance(exc, GenqueueError):
                raise
            raise _unreachable(app, exc) from exc  # e.g. not a Redis server at that port
        try:
            return await fn(app)
        finally:
            await app.close()

    import asyncio

    # psycopg-pool logs each failed connection attempt (PostgreSQL backend) likewise.
    loggers = [logging.getLogger(name) for name in ("genqueue", "psycopg")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        return asyncio.run(main())
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _unreachable(app: App, exc: Exception) -> BackendError:
    from genqueue.cli.urls import safe_url, unreachable_hint

    url = app.backend.url
    text = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, BackendError) or safe_url(url) not in text:
        text = f"cannot open {safe_url(url)}: {text}"
    return BackendError(f"{text}; {unreachable_hint(url)}")


def more_pages(cursor: str) -> None:
    """Say how to get the next page; the cursor gets a line of its own, never folded,
    so it can be copied whole."""
    out.print("more: run the same command with")
    out.print(f"--cursor {cursor}", soft_wrap=True)


def print_json(value: Any) -> None:
    out.out(serialization.dumps_str(value), highlight=False)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, field: str) -> float:
    """'90s', '15m', '2h', '7d', '1w' or plain seconds."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(
            f"invalid {field} {text!r}: use seconds or 90s, 15m, 2h, 7d, 1w", field=field
        ) from None
    if value < 0:
        raise InvalidInput(f"{field} must not be negative", field=field)
    return value


def parse_when(text: str | None, field: str) -> float | None:
    """An instant: ISO 8601, epoch seconds, or a duration meaning that long ago ('24h')."""
    if text is None:
        return None
    if _DURATION.match(text.strip()):
        return time.time() - parse_duration(text, field)
    try:
        return serialization.parse_instant(text)
    except InvalidInput:
        raise InvalidInput(
            f"invalid {field} {text!r}: use ISO 8601 (2026-11-28T12:00:00Z), "
            "epoch seconds, or an age like 24h",
            field=field,
        ) from None


def ago(ts: float | None, now: float | None = None) -> str:
    """'3 s ago', '5 min ago', 'in 2 h' for tables."""
    if ts is None:
        return "-"
    delta = (now if now is not None else time.time()) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 60:
        text = f"{delta:.0f} s"
    elif delta < 3600:
        text = f"{delta / 60:.0f} min"
    elif delta < 86400:
        text = f"{delta / 3600:.1f} h"
    else:
        text = f"{delta / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
