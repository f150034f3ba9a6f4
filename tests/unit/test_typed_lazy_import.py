"""Typed task data costs nothing to apps that do not use it: pydantic is not imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    from genqueue import App, JobContext
    from genqueue.testing import run_until_idle

    app = App("memory://")


    @app.task("plain")
    async def plain(ctx: JobContext) -> int:
        return len(ctx.data)


    async def main():
        async with app:
            job = await app.enqueue("plain", {"a": 1, "b": 2})
            await run_until_idle(app)
            print((await app.get(job.id)).result, "pydantic" in sys.modules)


    asyncio.run(main())
    """
)


def test_untyped_app_never_imports_pydantic() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "False"]
