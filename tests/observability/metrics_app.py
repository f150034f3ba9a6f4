"""Tasks for the two-process metrics test (``--app tests.observability.metrics_app:app``)."""

from __future__ import annotations

import os

from genqueue import App, ErrorKind, JobContext, RetryPolicy, TaskError

app = App(
    os.environ.get("GENQUEUE_BACKEND"),
    retry=RetryPolicy(max_retries=1, base_delay=0.05, jitter=0),
)


@app.task("ok", queue="m")
async def ok(ctx: JobContext) -> str:
    ctx.add_cost(usd=0.01)
    return "fine"


@app.task("flaky", queue="m")
async def flaky(ctx: JobContext) -> str:
    if ctx.attempt == 1:  # the first attempt fails, the retry succeeds
        raise TaskError("503 from the provider", kind=ErrorKind.SERVER)
    return "fine"


@app.task("bad", queue="m")
async def bad(ctx: JobContext) -> None:
    raise TaskError("prompt too long", kind=ErrorKind.VALIDATION)
