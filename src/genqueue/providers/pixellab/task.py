"""The built-in ``pixellab.generate`` task: generate, and never pay twice.

One attempt of a job, in order:

1. **Resume.** A job that already has a remote job id (from an earlier attempt, a crashed
   worker or a redrive) goes straight to polling that job. It is never submitted again.
2. **Guards.** A rate-limit cooldown or an open circuit breaker makes the job wait
   (``Snooze``: no retry is spent), and every request needs one of the account's
   in-flight slots (one lane for sync requests, one for async jobs).
3. **Uncertain submits.** If an earlier attempt sent a submit and never learned whether
   PixelLab accepted (and billed) it, the account's balance decides
   (``genqueue.providers.ledger``): not charged, it is sent again; maybe charged, the job
   goes to the DLQ as ``submission_uncertain``. An operator's redrive sends it again.
4. **Submit, write-ahead.** ``submitting`` is stored on the job before the request goes
   out, and the remote job id is stored before the first poll (``submitting``).
5. **Poll** until completed, failed, lost (404 after a grace period) or the remote job's
   deadline (``polling``). Poll errors back off; they do not spend attempts.

429/529 answers start a shared cooldown and snooze the job (at most
``max_rate_limit_waits`` times, then they count as ordinary retryable failures). Auth
and payment errors open the breaker and the job waits for it, up to ``max_breaker_wait``.
"""

from __future__ import annotations

import random
from typing import Any

from genqueue.app import App
from genqueue.classify import ErrorKind
from genqueue.context import JobContext
from genqueue.errors import InvalidInput
from genqueue.events import EventName
from genqueue.providers.base import Completed, ProviderError, RemoteRef
from genqueue.providers.guard import ProviderGuard, account_id, release_jitter
from genqueue.providers.pixellab import polling, submitting
from genqueue.providers.pixellab.client import PixelLabClient, RequestRecord
from genqueue.providers.pixellab.routes import Route, parse_data, route_for
from genqueue.providers.pixellab.settings import API_KEY_ENV, OUTPUT_ENV, TASK, PixelLabSettings
from genqueue.providers.png import png_size
from genqueue.providers.reconcile import Reconciler
from genqueue.signals import Snooze

__all__ = ["API_KEY_ENV", "OUTPUT_ENV", "TASK", "PixelLab", "PixelLabSettings", "parse_data"]


class PixelLab:
    """PixelLab wired into one app: its client (one per process), guards and task."""

    def __init__(self, app: App, settings: PixelLabSettings | None = None) -> None:
        self.app = app
        self.settings = settings or PixelLabSettings()
        self._client: PixelLabClient | None = None
        self._guard: ProviderGuard | None = None
        self._ledger: Reconciler | None = None

    def register(self) -> None:
        self.app.task(TASK, queue=self.settings.queue, max_retries=self.settings.max_retries)(
            self.generate
        )
        if self.settings.reconcile:
            lag = min(self.settings.ledger.reconcile_after, self.settings.ledger.settlement_lag)
            self.app.periodic("pixellab-ledger", min(30.0, max(1.0, lag / 2)), self.tend_ledger)

    async def tend_ledger(self) -> None:
        """Move the account's submit ledger on (see ``Reconciler.tend``)."""
        try:
            ledger = self.ledger
        except InvalidInput:
            return  # no API key in this process: it sends nothing, so it has nothing to decide
        if ledger is not None:
            await ledger.tend()

    @property
    def client(self) -> PixelLabClient:
        if self._client is None:
            self._client = PixelLabClient(
                self.settings.resolved_key(),
                base_url=self.settings.base_url,
                redactor=self.app.redactor,
                read_timeout=self.settings.read_timeout,
                observe=self._observe,
                event_hooks=self.app.tracing.http_hooks(),
            )
        return self._client

    def _observe(self, record: RequestRecord) -> None:
        self.app.events.emit(
            EventName.PROVIDER_REQUEST,
            provider=self.account,
            request=record.kind,
            operation=record.operation,
            outcome=record.outcome,
            seconds=round(record.seconds, 6),
        )

    @property
    def account(self) -> str:
        return account_id("pixellab", self.settings.resolved_key())

    @property
    def guard(self) -> ProviderGuard:
        if self._guard is None:
            self._guard = ProviderGuard(
                self.app,
                self.account,
                breaker=self.settings.breaker,
                max_in_flight=self.settings.max_in_flight,
            )
        return self._guard

    @property
    def ledger(self) -> Reconciler | None:
        """The account's submit ledger (None when reconciliation is off)."""
        if self._ledger is None and self.settings.reconcile:
            self._ledger = Reconciler(
                self.app, self.account, self.client.balance, self.settings.ledger
            )
        return self._ledger

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the task -----------------------------------------------------------------------------

    async def generate(self, ctx: JobContext) -> dict[str, Any]:
        operation, _ = parse_data(ctx.data)
        route = route_for(operation)
        if ctx.job.remote_job_id:
            # An earlier attempt (or a redrive) already has a job at PixelLab: resume it.
            await ctx.set_meta(resumed=int(ctx.job.meta.get("resumed", 0)) + 1)
            return await polling.poll(
                self, ctx, route, RemoteRef.parse(operation, ctx.job.remote_job_id)
            )
        await self.admit(ctx, route)  # may snooze: before anything counts as a resubmit
        try:
            submit_id = await submitting.prepare(self, ctx, route)
        except BaseException:
            await self.guard.release_slot(ctx.id, route.mode)
            raise
        return await submitting.submit(self, ctx, route, submit_id)

    # -- guards -------------------------------------------------------------------------------

    async def admit(self, ctx: JobContext, route: Route) -> None:
        gate = await self.guard.admit(ctx.id)
        if not gate.go:
            await self.wait(ctx, gate.delay, gate.reason)
        # Sync requests and async jobs are limited separately (PixelLab's 529 and 429).
        if not await self.guard.acquire_slot(ctx.id, self.slot_ttl(route), route.mode):
            raise Snooze(random.uniform(0.5, 2.0), "waiting for an in-flight slot")

    async def wait(self, ctx: JobContext, delay: float, reason: str) -> None:
        """Snooze while the account is cooling down or its breaker is open."""
        waited = float(ctx.job.meta.get("guard_waited", 0.0))
        if "circuit" in reason and waited >= self.settings.max_breaker_wait:
            raise ProviderError(
                f"gave up after waiting {waited:.0f} s for PixelLab ({reason})",
                kind=ErrorKind(ctx.job.meta.get("breaker_kind", ErrorKind.SERVER.value)),
                retryable=False,
            )
        jittered = release_jitter(delay)
        await ctx.set_meta(guard_waited=waited + jittered)
        raise Snooze(jittered, reason)

    def slot_ttl(self, route: Route) -> float:
        if route.mode == "sync":
            return self.settings.read_timeout_for(route) + 60
        return self.settings.deadline_for(route) + 60

    async def on_error(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        """Feed the guards; snooze when the account is the problem, not the job."""
        kind = exc.error_kind
        if kind is ErrorKind.RATE_LIMITED:
            await self._rate_limited(ctx, route, exc)
        elif kind in (ErrorKind.AUTH, ErrorKind.PAYMENT):
            opened_for = await self.guard.record_failure(ctx.id, kind.value, immediate=True)
            await ctx.set_meta(breaker_kind=kind.value)
            await self.wait(
                ctx,
                opened_for or self.settings.breaker.auth_cooldown,
                f"circuit open ({kind.value})",
            )
        elif kind in (ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.NETWORK):
            await self.guard.record_failure(ctx.id, kind.value, immediate=False)

    async def _rate_limited(self, ctx: JobContext, route: Route, exc: ProviderError) -> None:
        waits = int(ctx.job.meta.get("rate_limit_waits", 0)) + 1
        delay = await self.guard.rate_limited(exc.retry_after, f"HTTP {exc.status}")
        await self.guard.on_rate_limited(route.mode)
        if waits > self.settings.max_rate_limit_waits:
            return  # out of patience: an ordinary (retryable) failure from here on
        await ctx.set_meta(rate_limit_waits=waits)
        raise Snooze(release_jitter(delay), f"rate limited (HTTP {exc.status})")

    # -- results ------------------------------------------------------------------------------

    def finish(
        self,
        ctx: JobContext,
        route: Route,
        done: Completed,
        ref: RemoteRef | None,
        *,
        charged: bool = False,
    ) -> dict[str, Any]:
        """Write the images; record the cost unless it was recorded when it was ``charged``."""
        if done.usage is not None and not charged:
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
