"""The app that chaos tests run in real worker processes (``--app tests.chaos.chaos_app:app``).

Tasks append to a ledger file (``CHAOS_LEDGER``) with O_APPEND, one line per event, so the
test can count starts and completions even across SIGKILLed processes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from genqueue import App, JobContext, RetryPolicy
from genqueue.providers.breaker import BreakerSettings
from genqueue.providers.ledger import LedgerSettings
from genqueue.providers.pixellab import PixelLabSettings, register

app = App(
    os.environ.get("GENQUEUE_BACKEND"), retry=RetryPolicy(max_retries=1, base_delay=0.1, jitter=0)
)
# pixellab.generate against whatever PIXELLAB_BASE_URL and PIXELLAB_API_KEY the test sets
pixellab = register(
    app,
    PixelLabSettings(
        poll_interval=0.05,
        lost_grace=10,
        read_timeout=3.0,
        output_dir=Path(os.environ.get("GENQUEUE_OUTPUT_DIR", "genqueue-output")),
        # The tests' fake settles charges within 0.3 s.
        ledger=LedgerSettings(settlement_lag=0.5, reconcile_after=0.5, inflight_grace=1.0),
        breaker=BreakerSettings(cooldown=0.5, auth_cooldown=0.5, max_cooldown=2.0),
    ),
)


if os.environ.get("CHAOS_DIE_BEFORE_STORING"):
    # The worker dies after PixelLab answered (and charged) but before the result is stored.
    def _die(*args: object, **kwargs: object) -> dict[str, object]:
        os._exit(137)

    pixellab.finish = _die  # type: ignore[method-assign]


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
