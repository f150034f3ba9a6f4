"""Polling a paid remote job until it ends, without ever giving up on it too early.

The remote job is paid for and probably running, so a poll error (a 5xx, a timeout, a
dropped connection, an unreadable answer) is not an attempt: polling backs off (capped)
and goes on. Only three things end it: the job's result (completed or failed), PixelLab
saying it does not know the id (404 after ``lost_grace``: ``remote_lost``), or the
remote job's own deadline, counted from its submit (or from the redrive that resumed
it): then the job is dead-lettered as a timeout, and a redrive polls it again.

Polls respect the account's rate-limit cooldown like submits do. An auth error while
polling opens the breaker; the job snoozes and resumes polling the same remote job.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from genqueue.classify import ErrorKind
from genqueue.context import JobContext
from genqueue.providers.base import Completed, Pending, ProviderError, RemoteRef
from genqueue.providers.guard import backoff, release_jitter
from genqueue.providers.pixellab.client import RemoteJobGone
from genqueue.providers.pixellab.routes import Route

if TYPE_CHECKING:
    from genqueue.providers.pixellab.task import PixelLab


async def poll(px: PixelLab, ctx: JobContext, route: Route, ref: RemoteRef) -> dict[str, Any]:
    deadline_at = await _deadline(px, ctx, route)
    submitted_at = float(ctx.job.meta.get("submitted_at") or ctx.job.created_at)
    errors = 0
    polls = 0
    while True:
        # Keep (or, resuming, retake) an async slot: the job runs at PixelLab.
        await px.guard.hold_slot(ctx.id, px.slot_ttl(route))
        await _cooldown(px, deadline_at)
        try:
            state = await px.client.poll(ref)
        except RemoteJobGone:
            if await px.app.backend.time() - submitted_at > px.settings.lost_grace:
                await _ended(px, ctx, route, None)
                raise
            state = Pending("not visible yet")
        except ProviderError as exc:
            errors += 1
            await _poll_failed(px, ctx, route, exc)
            delay = backoff(errors, px.settings.poll_interval, px.settings.poll_backoff_cap)
            await _sleep_until(
                px, route, ref, delay, deadline_at, status=f"unseen ({exc.error_kind})"
            )
            continue
        errors = 0
        if isinstance(state, Completed):
            await _ended(px, ctx, route, state.usage.as_cost() if state.usage else None)
            await px.guard.record_success(ctx.id)
            return px.finish(ctx, route, state, ref)
        polls += 1
        ctx.progress(min(95.0, 5.0 + polls * 10), f"PixelLab job {state.status}")
        delay = px.settings.poll_interval * random.uniform(0.8, 1.2)
        await _sleep_until(px, route, ref, delay, deadline_at, status=state.status)


async def _deadline(px: PixelLab, ctx: JobContext, route: Route) -> float:
    """When the remote job is late: its submit (or the last redrive) plus the deadline."""
    meta = ctx.job.meta
    since = float(meta.get("poll_since") or meta.get("submitted_at") or ctx.job.created_at)
    if ctx.job.redrive_count > int(meta.get("poll_redrive", 0)):
        since = await px.app.backend.time()  # an operator asked to look again
        await ctx.set_meta(poll_since=since, poll_redrive=ctx.job.redrive_count)
    return since + px.settings.deadline_for(route)


async def _cooldown(px: PixelLab, deadline_at: float) -> None:
    remaining = await px.guard.cooldown_remaining()
    if remaining > 0:
        left = deadline_at - await px.app.backend.time()
        await asyncio.sleep(max(0.0, min(release_jitter(remaining), left)))


async def _sleep_until(
    px: PixelLab, route: Route, ref: RemoteRef, delay: float, deadline_at: float, *, status: str
) -> None:
    now = await px.app.backend.time()
    if now >= deadline_at:
        raise ProviderError(
            f"PixelLab job {ref.remote_job_id} still {status} "
            f"{px.settings.deadline_for(route):.0f} s after it was submitted; "
            "a redrive polls it again",
            kind=ErrorKind.TIMEOUT,
            remote_job_id=ref.remote_job_id,
            maybe_charged=True,
            retryable=False,
        )
    await asyncio.sleep(min(delay, max(0.0, deadline_at - now) + 0.01))


async def _poll_failed(px: PixelLab, ctx: JobContext, route: Route, exc: ProviderError) -> None:
    """Raise when the poll error ends the job (or the attempt); return to poll again."""
    kind = exc.error_kind
    if kind is ErrorKind.REMOTE_FAILED:
        cost = exc.usage.as_cost() if exc.usage is not None else None
        if cost:
            ctx.add_cost(**cost)
        await _ended(px, ctx, route, cost)
        raise exc
    if kind is ErrorKind.RATE_LIMITED:
        # Start (or keep) the account's cooldown; the next poll waits it out.
        await px.guard.rate_limited(exc.retry_after, f"HTTP {exc.status}")
        return
    if kind in (ErrorKind.AUTH, ErrorKind.PAYMENT):
        await px.on_error(ctx, route, exc)  # opens the breaker and snoozes; resumes later
        return
    if kind in (ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.NETWORK):
        await px.guard.record_failure(ctx.id, kind.value, immediate=False)


async def _ended(
    px: PixelLab, ctx: JobContext, route: Route, cost: dict[str, float] | None
) -> None:
    """The remote job is over: free its slot, and price its submit in the ledger."""
    await px.guard.release_slot(ctx.id, "async")
    submit_id = ctx.job.meta.get("submit_id")
    if px.ledger is not None and isinstance(submit_id, str):
        await px.ledger.settle(submit_id, route.operation, cost)
