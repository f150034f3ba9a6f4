"""Hostile tasks for real worker processes (``--app tests.chaos.hostile_app:app``).

Each task appends to the ledger file (``CHAOS_LEDGER``), one line per event:
``start <job> <attempt> <copies running in this process>`` and ``done <job> <attempt>``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter

from genqueue import App, JobContext, RetryPolicy

app = App(
    os.environ.get("GENQUEUE_BACKEND"), retry=RetryPolicy(max_retries=2, base_delay=0.1, jitter=0)
)

_lock = threading.Lock()
_live: Counter[str] = Counter()


def ledger(line: str) -> None:
    fd = os.open(os.environ["CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def started(ctx: JobContext) -> None:
    with _lock:
        _live[ctx.id] += 1
        ledger(f"start {ctx.id} {ctx.attempt} {_live[ctx.id]}")


def done(ctx: JobContext) -> None:
    with _lock:
        _live[ctx.id] -= 1
        ledger(f"done {ctx.id} {ctx.attempt}")


class Hostile(BaseException):
    """Neither an Exception nor one of Python's own."""


@app.task("hostile.exit")
async def exits(ctx: JobContext) -> None:
    started(ctx)
    raise SystemExit(3)


@app.task("hostile.interrupt")
async def interrupts(ctx: JobContext) -> None:
    started(ctx)
    raise KeyboardInterrupt


@app.task("hostile.generator_exit")
async def generator_exit(ctx: JobContext) -> None:
    started(ctx)
    raise GeneratorExit


@app.task("hostile.base")
def base(ctx: JobContext) -> None:
    started(ctx)
    raise Hostile("a BaseException from a thread")


@app.task("hostile.cancelled")
async def cancelled(ctx: JobContext) -> None:
    started(ctx)
    raise asyncio.CancelledError()


@app.task("hostile.async_timeout", timeout=0.3, max_retries=0)
async def async_timeout(ctx: JobContext) -> None:
    started(ctx)
    await asyncio.sleep(30)


@app.task("hostile.sleep")
async def sleep(ctx: JobContext) -> str:
    started(ctx)
    await asyncio.sleep(float(ctx.data["seconds"]))
    done(ctx)
    return "slept"


@app.task("hostile.sync_sleep")
def sync_sleep(ctx: JobContext) -> str:
    """A paid call that cannot be interrupted."""
    started(ctx)
    time.sleep(float(ctx.data["seconds"]))
    done(ctx)
    return "slept"


@app.task("hostile.sync_timeout", timeout=0.3, max_retries=2)
def sync_timeout(ctx: JobContext) -> None:
    started(ctx)
    time.sleep(float(ctx.data["seconds"]))
    done(ctx)


@app.task("hostile.blocker")
async def blocker(ctx: JobContext) -> str:
    started(ctx)
    time.sleep(float(ctx.data["seconds"]))  # blocks the event loop
    done(ctx)
    return "blocked"
