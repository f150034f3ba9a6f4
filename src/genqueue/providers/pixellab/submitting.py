"""Submitting a PixelLab job at most once per charge.

A submit is written ahead (``submitting`` and its ``submit_id`` on the job) and recorded
in the account's ledger before the request goes out. Its answer either proves what
happened (accepted, with a remote id or the images; or rejected: a 4xx, a rate limit, a
connection never made) or it does not (a 5xx, a dropped connection, a read timeout after
the body went out, a worker that died). Such an *uncertain* submit is resent blindly only
within the route's ``uncertain_resubmits_*`` budget (default 0: each resend may pay
again). Otherwise the job waits, snoozing, for the ledger's verdict: not charged, it is
sent again; maybe charged, it goes to the DLQ as ``submission_uncertain``. A redrive of
that job is an operator's decision and sends it again once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genqueue.classify import ErrorKind
from genqueue.context import JobContext
from genqueue.events import EventName
from genqueue.providers.base import GenerationRequest, ProviderError, RemoteRef
from genqueue.providers.guard import release_jitter
from genqueue.providers.ledger import Verdict
from genqueue.providers.pixellab import polling
from genqueue.providers.pixellab.routes import Route, parse_data
from genqueue.providers.reconcile import ACCEPTED, ACCEPTED_COST
from genqueue.signals import Snooze

if TYPE_CHECKING:
    from genqueue.providers.pixellab.task import PixelLab

RECONCILING = "submission uncertain: waiting for the account balance to settle"


def uncertain_error(route: Route, why: str) -> ProviderError:
    return ProviderError(
        f"submission uncertain: {why}; not resubmitting {route.operation} ({route.mode}) "
        "so as not to pay twice",
        kind=ErrorKind.SUBMISSION_UNCERTAIN,
        maybe_charged=True,
        retryable=False,
    )


async def prepare(px: PixelLab, ctx: JobContext, route: Route) -> str:
    """Settle an earlier uncertain submit, then record this one; its submit id."""
    if ctx.job.meta.get("submitting"):
        await _settle_earlier(px, ctx, route)
    number = int(ctx.job.meta.get("submits", 0)) + 1
    submit_id = f"{ctx.id}:{number}"
    ledger = px.ledger
    if ledger is not None:
        wait = await ledger.begin(submit_id, px.settings.read_timeout_for(route))
        if wait is not None:
            raise Snooze(release_jitter(wait.delay), wait.reason)
    return submit_id


async def submit(px: PixelLab, ctx: JobContext, route: Route, submit_id: str) -> dict[str, object]:
    _, params = parse_data(ctx.data)
    now = await px.app.backend.time()
    number = int(submit_id.rsplit(":", 1)[1])
    await ctx.set_meta(submitting=True, submit_id=submit_id, submits=number, submitted_at=now,
                       submit_redrive=ctx.job.redrive_count)  # fmt: skip
    try:
        outcome = await px.client.submit(GenerationRequest(ctx.id, route.operation, params))
    except ProviderError as exc:
        await _failed(px, ctx, route, submit_id, exc)
        raise  # _failed raises a better signal when it has one
    await px.guard.record_success(ctx.id)
    await px.guard.rate_limit_passed()
    ledger = px.ledger
    if isinstance(outcome, RemoteRef):
        # The remote id first: from here on any attempt resumes this job, never resubmits.
        await ctx.set_remote_job_id(outcome.remote_job_id, submitting=False, poll_since=now,
                                    poll_redrive=ctx.job.redrive_count,
                                    **outcome.extra_ids)  # fmt: skip
        if ledger is not None:
            await ledger.end(submit_id, "accepted", route.operation)  # priced when it ends
        if route.mode == "sync":
            await px.guard.release_slot(ctx.id, "sync")
        await px.guard.on_accepted(ctx.id, px.slot_ttl(route), "async")
        return await polling.poll(px, ctx, route, outcome)
    cost = outcome.usage.as_cost() if outcome.usage is not None else None
    # Charged: store the cost and the acceptance before anything else, so a worker that
    # dies before the images are stored leaves a job that knows it was charged.
    if cost:
        ctx.add_cost(**cost)
    ctx.job.meta.update({ACCEPTED: submit_id, ACCEPTED_COST: cost})
    await ctx.save_cost()
    if ledger is not None:
        await ledger.end(submit_id, "accepted", route.operation, cost)
    await px.guard.release_slot(ctx.id, route.mode)
    await px.guard.on_accepted(ctx.id, px.slot_ttl(route), route.mode)
    # Not written now: the mark is cleared by the same write that stores the images. A
    # worker dying before it leaves a job that knows it was charged, never one that
    # submits again.
    ctx.job.meta["submitting"] = False
    return px.finish(ctx, route, outcome, None, charged=True)


async def _failed(
    px: PixelLab, ctx: JobContext, route: Route, submit_id: str, exc: ProviderError
) -> None:
    await px.guard.release_slot(ctx.id, route.mode)
    ledger = px.ledger
    if not exc.maybe_charged:  # rejected: nothing was charged, nothing is uncertain
        if ledger is not None:
            await ledger.end(submit_id, "rejected", route.operation)
        await ctx.set_meta(submitting=False)
        await px.on_error(ctx, route, exc)
        return
    if ledger is not None:
        await ledger.end(submit_id, "uncertain", route.operation)
    if exc.error_kind in (ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.NETWORK):
        # An outage that shows up as timeouts must open the breaker like one of 5xx.
        await px.guard.record_failure(ctx.id, exc.error_kind.value, immediate=False)
    if await _blind_resubmit(px, ctx, route, f"the response was lost ({exc.error_kind.value})"):
        return  # the retry sends it again
    if ledger is None:
        raise uncertain_error(route, f"the response was lost ({exc})") from exc
    raise Snooze(release_jitter(px.settings.ledger.reconcile_after / 4 + 1), RECONCILING)


async def _blind_resubmit(px: PixelLab, ctx: JobContext, route: Route, why: str) -> bool:
    """Use one of the route's blind resends, if any are left (each may pay twice)."""
    done = int(ctx.job.meta.get("uncertain_resubmits", 0))
    if done >= px.settings.resubmits_allowed(route):
        return False
    await ctx.set_meta(submitting=False, uncertain_resubmits=done + 1)
    ctx.note(resubmit=f"resending blindly: {why}; this may pay twice")
    if px.ledger is not None:
        await px.ledger.count_blind_resubmit()
    return True


async def _settle_earlier(px: PixelLab, ctx: JobContext, route: Route) -> None:
    """An earlier attempt sent a submit and never learned its outcome: decide now."""
    meta = ctx.job.meta
    if ctx.job.redrive_count > int(meta.get("submit_redrive", 0)):
        resubmits = int(meta.get("operator_resubmits", 0)) + 1
        await ctx.set_meta(submitting=False, submit_redrive=ctx.job.redrive_count,
                           operator_resubmits=resubmits)  # fmt: skip
        ctx.note(resubmit="redriven by an operator after an uncertain submit: sending it again")
        return
    ledger, submit_id = px.ledger, meta.get("submit_id")
    if submit_id is not None and meta.get(ACCEPTED) == submit_id:
        await _accepted_but_lost(px, ctx, route, str(submit_id))
    if await _blind_resubmit(px, ctx, route, "an earlier attempt never learned the outcome"):
        return
    if ledger is None or not isinstance(submit_id, str):
        raise uncertain_error(route, "an earlier attempt sent it and never learned the outcome")
    found = await ledger.verdict(submit_id)
    if not isinstance(found, Verdict):
        raise Snooze(release_jitter(found), RECONCILING)
    await _apply(px, ctx, route, found)


async def _accepted_but_lost(px: PixelLab, ctx: JobContext, route: Route, submit_id: str) -> None:
    """PixelLab accepted (and billed) it; the worker died before the images were stored."""
    if px.ledger is not None:  # in case its end never reached the ledger
        cost = ctx.job.meta.get(ACCEPTED_COST)
        await px.ledger.end(submit_id, "accepted", route.operation, cost or None)
    raise uncertain_error(
        route,
        "PixelLab accepted and charged it (the cost is on this job), but the worker stopped "
        "before its images were stored; a redrive generates them again, and pays again",
    )


async def _apply(px: PixelLab, ctx: JobContext, route: Route, found: Verdict) -> None:
    assert px.ledger is not None
    if found.cost and ctx.job.meta.get("share_of") != found.submit_id:
        # Its share of what the account was charged, stored before the ledger forgets the
        # verdict (and counts the share as attributed): a worker dying in between must
        # neither lose the share nor, asking again, add it twice.
        ctx.add_cost(**found.cost)
        ctx.job.meta["share_of"] = found.submit_id
        await ctx.save_cost()
    await px.ledger.forget(found.submit_id)
    px.app.events.emit(EventName.SUBMISSION_RECONCILED, job_id=ctx.id, task=ctx.job.task,
                       provider=px.account, verdict=found.verdict, why=found.why)  # fmt: skip
    if found.verdict == "charged":
        raise uncertain_error(route, f"it may have been charged: {found.why}")
    await ctx.set_meta(submitting=False, reconciled=int(ctx.job.meta.get("reconciled", 0)) + 1)
    ctx.note(resubmit=f"the earlier submit was not charged ({found.why}): sending it again")
