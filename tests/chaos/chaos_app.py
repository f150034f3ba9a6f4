"""The app that chaos tests run in real worker processes (``--app tests.chaos.chaos_app:app``).

Tasks append to a ledger file (``CHAOS_LEDGER``) with O_APPEND, one line per event, so the
test can count starts and completions even across SIGKILLed processes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from genqueue import App, JobContext, RetryPolicy
from genqueue.providers.pixellab import PixelLabSettings, register

app = App(
    os.environ.get("GENQUEUE_BACKEND"), retry=RetryPolicy(max_retries=1, base_delay=0.1, jitter=0)
)
# pixellab.generate against whatever PIXELLAB_BASE_URL and PIXELLAB_API_KEY the test sets
register(
    app,
    PixelLabSettings(
        poll_interval=0.05,
        lost_grace=10,
        output_dir=Path(os.environ.get("GENQUEUE_OUTPUT_DIR", "genqueue-output")),
    ),
)


def ledger(line: str) -> None:
    fd = os.open(os.environ["CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@app.task("chaos.sleep")
async def sleep(ctx: JobContext) -> str:
    ledger(f"start {ctx.id} {ctx.attempt} {os.getpid()}")
    await asyncio.sleep(float(ctx.data["seconds"]))
    ledger(f"done {ctx.id} {ctx.attempt} {os.getpid()}")
    return "slept"


@app.task("chaos.poison")
async def poison(ctx: JobContext) -> None:
    ledger(f"start {ctx.id} {ctx.attempt} {os.getpid()}")
    os._exit(137)  # the worker dies with its job, every time


@app.task("chaos.count")
async def count(ctx: JobContext) -> int:
    ledger(f"done {ctx.id} {ctx.attempt} {os.getpid()}")
    return int(ctx.data["i"])
