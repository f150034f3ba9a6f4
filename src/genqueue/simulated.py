"""Simulated generation: a task that fails in every way genqueue knows, on purpose.

``demo.generate`` pretends to call a paid image API. Each job's ``scenario`` says how the
call behaves: succeed, fail once with a transient error and then succeed, or fail with
an error that is never retried. Nothing touches the network, so the CLI and the queue's
failure handling can be tried (and tested) without any provider.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from genqueue.app import App
from genqueue.classify import ErrorKind, TaskError
from genqueue.context import JobContext
from genqueue.retry import RetryPolicy

QUEUE = "demo"

#: scenario -> (error kind it raises, HTTP status, attempts that fail before success or None=always)
SCENARIOS: dict[str, tuple[ErrorKind | None, int | None, int | None]] = {
    "ok": (None, None, 0),
    "flaky_server": (ErrorKind.SERVER, 503, 1),
    "slow_network": (ErrorKind.NETWORK, None, 1),
    "read_timeout": (ErrorKind.TIMEOUT, None, 1),
    "rate_limited": (ErrorKind.RATE_LIMITED, 429, 1),
    "server_down": (ErrorKind.SERVER, 500, None),
    "bad_key": (ErrorKind.AUTH, 401, None),
    "no_credits": (ErrorKind.PAYMENT, 402, None),
    "bad_prompt": (ErrorKind.VALIDATION, 422, None),
    "remote_failed": (ErrorKind.REMOTE_FAILED, None, None),
    "bug": (ErrorKind.UNKNOWN, None, None),
}


async def simulated_generate(ctx: JobContext) -> dict[str, Any]:
    """A stand-in for a paid generation call."""
    data = ctx.data if isinstance(ctx.data, dict) else {}
    scenario = str(data.get("scenario", "ok"))
    kind, status, failing_attempts = SCENARIOS.get(scenario, SCENARIOS["bug"])
    rng = random.Random(f"{ctx.id}:{ctx.attempt}")
    for step in range(1, 4):
        await asyncio.sleep(rng.uniform(0.005, 0.03))
        ctx.progress(step * 30, f"rendering {data.get('prompt', 'sprite')} ({step}/3)")
    if kind is not None and (failing_attempts is None or ctx.attempt <= failing_attempts):
        _fail(kind, status, scenario)
    ctx.add_cost(usd=0.01, generations=1)
    return {"image": f"{ctx.id}.png", "prompt": data.get("prompt"), "size": data.get("size", 64)}


def _fail(kind: ErrorKind, status: int | None, scenario: str) -> None:
    if kind is ErrorKind.NETWORK:
        raise ConnectionResetError(104, "Connection reset by peer")
    if kind is ErrorKind.TIMEOUT:
        raise TimeoutError("read timed out after 30 s")
    if kind is ErrorKind.UNKNOWN:
        raise KeyError("image")  # a bug: not retried
    retry_after = 0.2 if kind is ErrorKind.RATE_LIMITED else None
    raise TaskError(
        f"simulated {scenario} (HTTP {status or '-'})",
        kind=kind,
        status=status,
        retry_after=retry_after,
    )


def register(app: App) -> None:
    app.task(
        "demo.generate",
        queue=QUEUE,
        max_retries=2,
        retry=RetryPolicy(max_retries=2, base_delay=0.2, multiplier=2.0, jitter=0.1, max_delay=2.0),
    )(simulated_generate)
