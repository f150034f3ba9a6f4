"""The ``genqueue`` entry point: the command tree, and errors as one line and an exit code.

Exit codes: 0 success; 1 an error (bad input, refused operation, storage failure); 2 a
usage error (unknown option, missing argument); 3 not found; 130 interrupted. No command
prints a traceback unless ``GENQUEUE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import typer

from genqueue.cli import dlq, jobs
from genqueue.cli.alerts import alerts_app
from genqueue.cli.breaker import breaker_app
from genqueue.cli.common import configure_output, err, fail_line
from genqueue.cli.demo import demo_command
from genqueue.cli.fake import fake_pixellab
from genqueue.cli.serve import serve
from genqueue.cli.worker import worker
from genqueue.errors import GenqueueError, NotFound

_ADD: dict[str, Callable[[typer.Typer], object]] = {
    "demo": lambda t: t.command("demo")(demo_command),
    "fake-pixellab": lambda t: t.command("fake-pixellab")(fake_pixellab),
    "worker": lambda t: t.command("worker")(worker),
    "serve": lambda t: t.command("serve")(serve),
    "enqueue": lambda t: t.command("enqueue")(jobs.enqueue),
    "stats": lambda t: t.command("stats")(jobs.stats),
    "job": lambda t: t.add_typer(jobs.job_app, name="job"),
    "jobs": lambda t: t.add_typer(jobs.jobs_app, name="jobs"),
    "dlq": lambda t: t.add_typer(dlq.dlq_app, name="dlq"),
    "breaker": lambda t: t.add_typer(breaker_app, name="breaker"),
    "alerts": lambda t: t.add_typer(alerts_app, name="alerts"),
}


def build(argv: Sequence[str] | None = None) -> typer.Typer:
    """The command tree; only the group ``argv`` names, when it names one.

    Typer turns every command's signature into click parameters before running any:
    building only the one asked for is a quarter of ``genqueue dlq list``'s start-up.
    """
    tree = typer.Typer(
        name="genqueue",
        help="genqueue: a job queue for AI generation work, with retries and a dead letter queue.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: rich-formatted help imports a Markdown parser, a third of start-up.
        rich_markup_mode=None,
    )
    # A callback keeps the tree a group even when it holds one command.
    tree.callback()(_group)
    wanted = next((arg for arg in argv or () if not arg.startswith("-")), None)
    for name, add in _ADD.items():
        if wanted not in _ADD or name == wanted:
            add(tree)
    return tree


def _group() -> None:
    """genqueue: a job queue for AI generation work, with retries and a dead letter queue."""


#: The whole tree (for tools that inspect it; ``run`` builds what it needs).
cli = build()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    code = _main(argv)
    if argv is None:
        sys.exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    configure_output()
    command = typer.main.get_command(build(sys.argv[1:] if argv is None else argv))
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of raising.
        result = command.main(args=argv, prog_name="genqueue", standalone_mode=False)
    except Exception as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return result if isinstance(result, int) else 0


def _exit_code(exc: Exception) -> int:
    """Report an exception as one line (or click's usage message); return the exit code."""
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, typer.Abort):
        err.print("aborted")
        return 1
    if isinstance(exc, typer.TyperException):  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            fail_line(str(exc))
        return int(getattr(exc, "exit_code", 2))
    if isinstance(exc, GenqueueError):
        fail_line(str(exc))
        return 3 if isinstance(exc, NotFound) else 1
    if os.environ.get("GENQUEUE_DEBUG"):
        raise exc
    fail_line(f"unexpected {type(exc).__name__}: {exc} (set GENQUEUE_DEBUG=1 for the traceback)")
    return 1


if __name__ == "__main__":  # pragma: no cover
    run()
