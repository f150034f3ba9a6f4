"""The built-in ``pixellab.generate`` task: generate, and never pay twice.

One attempt of a job, in order:

1. **Resume.** A job that already has a remote job id (from an earlier attempt, a crashed
   worker or a redrive) goes straight to polling that job. It is never submitted again.
2. **Uncertain submissions.** If an earlier attempt sent a submit and never learned the
   outcome (it crashed, or the response was lost), the submit may have been accepted and
   billed. Sync operations may be resubmitted ``uncertain_resubmits`` times (default 1);
   async ones go to the DLQ as ``submission_uncertain``.
3. **Guards.** A rate-limit cooldown or an open circuit breaker makes the job wait
   (``Snooze``: no retry is spent). Async operations also need one of the account's
   in-flight slots.
4. **Submit, write-ahead.** ``submitting`` is stored on the job before the request goes
   out, and the remote job id is stored before the first poll.
5. **Poll** until completed, failed, lost (404 after a grace period) or the operation's
   deadline (a timeout; the next attempt resumes the same remote job).

429/529 answers start a shared cooldown and snooze the job (at most
``max_rate_limit_waits`` times, then they count as ordinary retryable failures). Auth
and payment errors open the breaker and the job waits for it, up to ``max_breaker_wait``.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genqueue.app import App
from genqueue.classify import ErrorKind
from genqueue.context import JobContext
from genqueue.errors import InvalidInput
from genqueue.providers.base import Completed, GenerationRequest, Pending, ProviderError, RemoteRef
from genqueue.providers.guard import BreakerSettings, ProviderGuard, account_id, backoff
from genqueue.providers.pixellab.client import PixelLabClient, RemoteJobGone
from genqueue.providers.pixellab.routes import Route, route_for
from genqueue.providers.png import png_size
from genqueue.signals import Snooze

API_KEY_ENV = "PIXELLAB_API_KEY"
OUTPUT_ENV = "GENQUEUE_OUTPUT_DIR"
TASK = "pixellab.generate"


@dataclass(frozen=True)
class PixelLabSettings:
    api_key: str | None = None  # default: $PIXELLAB_API_KEY
    base_url: str | None = None  # default: $PIXELLAB_BASE_URL, else the real API
    output_dir: Path | None = None  # default: $GENQUEUE_OUTPUT_DIR, else ./genqueue-output
    queue: str = "pixellab"
    max_retries: int = 2
    poll_interval: float = 3.0
    #: A remote job that polls 404 this soon after submit is "not visible yet", not lost.
    lost_grace: float = 30.0
    #: Deadline for one attempt's polling; None takes the route's (15 min by default).
    poll_deadline: float | None = None
    #: Read timeout of every request; None takes the route's (300 s sync, 60 s async).
    read_timeout: float | None = None
    #: How often a submission whose outcome is unknown may be sent again, by route mode.
    #: Async submits are never resent by default: a remote job we cannot see may exist.
    uncertain_resubmits_sync: int = 1
    uncertain_resubmits_async: int = 0
    max_rate_limit_waits: int = 10
    max_in_flight: int = 8
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    #: How long a job waits on an open breaker before it fails with the breaker's error.
    max_breaker_wait: float = 3600.0

    def resolved_key(self) -> str:
        key = self.api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise InvalidInput(f"no PixelLab API key: set {API_KEY_ENV}", field="api_key")
        return key

    def resolved_output(self) -> Path:
        return self.output_dir or Path(os.environ.get(OUTPUT_ENV) or "genqueue-output")


class PixelLab:
    """PixelLab wired into one app: its client (one per process), guard and task."""

    def __init__(self, app: App, settings: PixelLabSettings | None = None) -> None:
        self.app = app
        self.settings = settings or PixelLabSettings()
        self._client: PixelLabClient | None = None
        self._guard: ProviderGuard | None = None

    def register(self) -> None:
        self.app.task(TASK, queue=self.settings.queue, max_retries=self.settings.max_retries)(
            self.generate
        )

    @property
    def client(self) -> PixelLabClient:
        if self._client is None:
            self._client = PixelLabClient(
                self.settings.resolved_key(),
                base_url=self.settings.base_url,
                redactor=self.app.redactor,
                read_timeout=self.settings.read_timeout,
            )
        return self._client

    @property
    def guard(self) -> ProviderGuard:
        if self._guard is None:
            self._guard = ProviderGuard(
                self.app,
                account_id("pixellab", self.settings.resolved_key()),
                breaker=self.settings.breaker,
                max_in_flight=self.settings.max_in_flight,
            )
        return self._guard

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the task -----------------------------------------------------------------------------

    async def generate(self, ctx: JobContext) -> dict[str, Any]:
        operation, params = parse_data(ctx.data)
        route = route_for(operation)
        if ctx.job.remote_job_id:
            # An earlier attempt (or a redrive) already has a job at PixelLab: resume it.
            await ctx.set_meta(resumed=int(ctx.job.meta.get("resumed", 0)) + 1)
            return await self._poll(ctx, route, RemoteRef.parse(operation, ctx.job.remote_job_id))
        await self._admit(ctx, route)  # may snooze: before anything counts as a resubmit
        try:
            await self._check_uncertain(ctx, route)
        except ProviderError:
            await self.guard.release_slot(ctx.id)
            raise
        await ctx.set_meta(submitting=True, submitted_at=await self.app.backend.time())
        try:
            outcome = await self.client.submit(GenerationRequest(ctx.id, operation, params))
        except ProviderError as exc:
            await self._submit_failed(ctx, route, exc)
            raise  # _submit_failed raises a better signal when it has one
        await self.guard.record_success(ctx.id)
        if isinstance(outcome, RemoteRef):
            await ctx.set_remote_job_id(
                outcome.remote_job_id, submitting=False, **outcome.extra_ids
            )
            await self.guard.on_accepted(ctx.id, self._slot_ttl(route))
            return await self._poll(ctx, route, outcome)
        await ctx.set_meta(submitting=False)
        return self._finish(ctx, route, outcome, None)

    # -- before submitting --------------------------------------------------------------------

    async def _check_uncertain(self, ctx: JobContext, route: Route) -> None:
        if not ctx.job.meta.get("submitting"):
            return
        done = int(ctx.job.meta.get("uncertain_resubmits", 0))
        if done >= self._resubmits_allowed(route):
            raise self._uncertain(route, "an earlier attempt sent it and never learned the outcome")
        await ctx.set_meta(uncertain_resubmits=done + 1)

    def _resubmits_allowed(self, route: Route) -> int:
        if route.mode == "sync":
            return self.settings.uncertain_resubmits_sync
        return self.settings.uncertain_resubmits_async

    def _uncertain(self, route: Route, why: str) -> ProviderError:
        return ProviderError(
            f"submission uncertain: {why}; not resubmitting {route.operation} "
            f"({route.mode}) so as not to pay twice",
            kind=ErrorKind.SUBMISSION_UNCERTAIN,
            maybe_charged=True,
            retryable=False,
        )

    async def _admit(self, ctx: JobContext, route: Route) -> None:
        gate = await self.guard.admit(ctx.id)
        if not gate.go:
            await self._wait(ctx, gate.delay, gate.reason)
        if route.mode == "async" and not await self.guard.acquire_slot(
            ctx.id, self._slot_ttl(route)
        ):
            raise Snooze(random.uniform(1.0, 3.0), "waiting for an in-flight slot")

    async def _wait(self, ctx: JobContext, delay: float, reason: str) -> None:
        """Snooze while the account is cooling down or its breaker is open."""
        waited = float(ctx.job.meta.get("guard_waited", 0.0))
        if "circuit" in reason and waited >= self.settings.max_breaker_wait:
            raise ProviderError(
                f"gave up after waiting {waited:.0f} s for PixelLab ({reason})",
                kind=ErrorKind(ctx.job.meta.get("breaker_kind", ErrorKind.SERVER.value)),
                retryable=False,
            )
        jittered = delay * random.uniform(1.0, 1.2) + 0.05
        await ctx.set_meta(guard_waited=waited + jittered)
        raise Snooze(jittered, reason)

    def _slot_ttl(self, route: Route) -> float:
        return (self.settings.poll_deadline or route.deadline) + 60

    # -- when the submit failed ---------------------------------------------------------------

    async def _submit_failed(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        if route.mode == "async":
            await self.guard.release_slot(ctx.id)
        if exc.maybe_charged:
            # The request went out; PixelLab may have accepted (and billed) it.
            if int(ctx.job.meta.get("uncertain_resubmits", 0)) >= self._resubmits_allowed(route):
                raise self._uncertain(route, f"the response was lost ({exc})") from exc
            await self.guard.record_failure(ctx.id, exc.error_kind.value, immediate=False)
            return  # the retry resubmits once (sync operations only)
        await ctx.set_meta(submitting=False)
        await self._on_error(ctx, route, exc)

    async def _on_error(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        kind = exc.error_kind
        if kind is ErrorKind.RATE_LIMITED:
            await self._rate_limited(ctx, route, exc)
        elif kind in (ErrorKind.AUTH, ErrorKind.PAYMENT):
            opened_for = await self.guard.record_failure(ctx.id, kind.value, immediate=True)
            await ctx.set_meta(breaker_kind=kind.value)
            await self._wait(
                ctx,
                opened_for or self.settings.breaker.auth_cooldown,
                f"circuit open ({kind.value})",
            )
        elif kind in (ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.NETWORK):
            await self.guard.record_failure(ctx.id, kind.value, immediate=False)

    async def _rate_limited(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        waits = int(ctx.job.meta.get("rate_limit_waits", 0)) + 1
        delay = exc.retry_after if exc.retry_after is not None else backoff(waits)
        await self.guard.start_cooldown(delay, f"HTTP {exc.status}")
        if route.mode == "async" and exc.status == 429:
            await self.guard.on_rate_limited()
        if waits > self.settings.max_rate_limit_waits:
            return  # out of patience: an ordinary (retryable) failure from here on
        await ctx.set_meta(rate_limit_waits=waits)
        raise Snooze(delay * random.uniform(1.0, 1.1), f"rate limited (HTTP {exc.status})")

    # -- polling ------------------------------------------------------------------------------

    async def _poll(self, ctx: JobContext, route: Route, ref: RemoteRef) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.poll_deadline or route.deadline)
        submitted_at = float(ctx.job.meta.get("submitted_at") or ctx.job.created_at)
        polls = 0
        while True:
            if route.mode == "async":  # keep (or, resuming, retake) the slot: the job runs remotely
                await self.guard.hold_slot(ctx.id, self._slot_ttl(route))
            try:
                state = await self.client.poll(ref)
            except RemoteJobGone:
                if await self.app.backend.time() - submitted_at > self.settings.lost_grace:
                    await self.guard.release_slot(ctx.id)
                    raise
                state = Pending("not visible yet")
            except ProviderError as exc:
                await self._poll_failed(ctx, route, exc)
                raise
            if isinstance(state, Completed):
                await self.guard.release_slot(ctx.id)
                await self.guard.record_success(ctx.id)
                return self._finish(ctx, route, state, ref)
            polls += 1
            ctx.progress(min(95.0, 5.0 + polls * 10), f"PixelLab job {state.status}")
            if loop.time() >= deadline:
                raise ProviderError(
                    f"PixelLab job {ref.remote_job_id} still {state.status} at the deadline; "
                    "the next attempt resumes it",
                    kind=ErrorKind.TIMEOUT,
                    remote_job_id=ref.remote_job_id,
                    maybe_charged=True,
                )
            await asyncio.sleep(self.settings.poll_interval * random.uniform(0.8, 1.2))

    async def _poll_failed(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        if exc.error_kind is ErrorKind.REMOTE_FAILED:
            await self.guard.release_slot(ctx.id)
            if exc.usage is not None:
                ctx.add_cost(**exc.usage.as_cost())
            return
        await self._on_error(ctx, route, exc)

    # -- results ------------------------------------------------------------------------------

    def _finish(
        self, ctx: JobContext, route: Route, done: Completed, ref: RemoteRef | None
    ) -> dict[str, Any]:
        if done.usage is not None:
            ctx.add_cost(**done.usage.as_cost())
        folder = self.settings.resolved_output() / ctx.id
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for index, png in enumerate(done.images):
            path = folder / f"{index:02d}.png"
            path.write_bytes(png)
            width, height = png_size(png)
            images.append({"path": str(path), "width": width, "height": height, "bytes": len(png)})
        return {
            "operation": route.operation,
            "images": images,
            "usage": done.usage.as_cost() if done.usage else None,
            "remote_job_id": ref.remote_job_id if ref else None,
        }


def parse_data(data: Any) -> tuple[str, dict[str, Any]]:
    """A ``pixellab.generate`` job's data: ``{"operation": ..., "params": {...}}``."""
    if not isinstance(data, dict):
        raise InvalidInput(
            "pixellab.generate data must be an object with operation and params", field="data"
        )
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InvalidInput(
            "params must be an object (the PixelLab request body)", field="data.params"
        )
    return str(data.get("operation")), params
