"""The library prints nothing on stderr of an app that has not configured logging."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import logging

    from genqueue import App
    from genqueue.testing import run_until_idle

    app = App("memory://")


    @app.task("boom")
    async def boom(ctx):
        raise PermissionError("HTTP 403: the key was revoked")


    async def main():
        async with app:
            job = await app.enqueue("boom", {})
            await run_until_idle(app)
            print((await app.get(job.id)).state.value)
        # The path above logged at ERROR (queue_dlq_move) on the genqueue loggers.
        print(logging.getLogger("genqueue.events").isEnabledFor(logging.ERROR))


    asyncio.run(main())
    """
)


def test_no_stderr_without_logging_configured() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dead", "True"]
    assert done.stderr == ""


def test_configured_logging_still_gets_the_warnings() -> None:
    script = SCRIPT.replace(
        "app = App(", "logging.basicConfig(level=logging.WARNING)\napp = App(", 1
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "queue_dlq_move" in done.stderr
