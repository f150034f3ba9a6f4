"""The worker: fetch jobs under a lease, run them concurrently, store what happened.

A worker runs named side tasks next to its fetch loop (heartbeat, promoter, reclaimer,
sweeper); if one dies the worker stops rather than run half-broken. On SIGTERM/SIGINT it
stops fetching, lets running jobs finish within the grace period and releases the rest
back to the queue; a second signal releases them at once. A job whose worker vanished
(kill -9) is reclaimed by any worker once its lease expires, and that counts as a failed
attempt (``worker_lost``), so a job that kills its worker every time ends in the DLQ.

No task takes its worker down: whatever a task raises (``SystemExit`` included) is that
task's failure, and only the worker's own cancellations (shutdown, lost lease) are
recorded as such. A sync task's thread cannot be stopped, so its job keeps its slot and
lease until the thread returns, past its timeout or the shutdown grace period
(``attempt_overrun``); only a forced stop gives up on it, and the process exits. A task
that blocks the event loop is named by a watchdog thread (``loop_blocked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from genqueue import maintenance, presence
from genqueue.announce import announce, announce_overrun, announce_started
from genqueue.backends.base import Lease, RunningUpdate
from genqueue.batcher import MoveBatcher
from genqueue.burst import Left, delayed_jobs
from genqueue.context import JobContext, LeaseLost
from genqueue.errors import StorageCorrupt
from genqueue.events import EventName
from genqueue.execution import Outcome, PlanContext, execute, plan, unrunnable, worker_lost
from genqueue.job import Job
from genqueue.running import JOB_TASK_PREFIX, RunningJob, released
from genqueue.settings import WorkerSettings
from genqueue.threads import TaskThread
from genqueue.watchdog import BlockedLoopReport, watch_loop

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.worker")


class Worker:
    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        settings: WorkerSettings | None = None,
        burst: bool = False,
        burst_horizon: float = 0.0,
        worker_id: str | None = None,
        handle_signals: bool = False,
        alerts: Callable[[str, asyncio.Event], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.queues = list(queues or app.tasks.queues() or ["default"])
        self.burst = burst
        #: A burst worker waits for retries and snoozes due within this many seconds.
        self.burst_horizon = burst_horizon
        #: What a burst worker left when it stopped (see ``genqueue.burst``).
        self.burst_left: Left | None = None
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.handle_signals = handle_signals
        self._alerts = alerts  # e.g. AlertEvaluator.run (genqueue.observability.alerts)
        self.stats: Counter[str] = Counter()
        self._running: dict[str, RunningJob] = {}
        self._batcher = MoveBatcher(app.backend, events=app.events)
        self._stop = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._force = False
        #: The asyncio task running ``run()``, and its cancellation count when it began.
        self._main: asyncio.Task[Any] | None = None
        self._main_cancelling = 0
        self._blocked_loop_report = BlockedLoopReport(
            self._running, app.events, self.id, self.stats
        )
        self._fetch_failures = 0
        self._started = app.clock.now()

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop fetching and shut down gracefully; a second call releases running jobs now."""
        if self._stop.is_set():
            self._force = True
            for running in self._running.values():
                self._release(running)
        self._stop.set()

    async def run(self) -> Counter[str]:
        """Run until stopped (or, in burst mode, until nothing is running or due)."""
        await self.app.open()
        if self.settings.integrity_check:
            await self.app.backend.check_integrity()
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._main_cancelling = self._main.cancelling() if self._main is not None else 0
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        self.app.events.emit(
            EventName.WORKER_STARTED,
            worker=self.id,
            queues=self.queues,
            concurrency=self.settings.concurrency,
        )
        watchdog = watch_loop(loop, self.settings.loop_block_threshold, self._blocked_loop_report)
        try:
            await self._maintain_once()
            await self._beat_presence()  # listed as present before it runs any job
            await self._run_side_tasks()
            await self._shutdown()
        except asyncio.CancelledError:
            # Cancelling the worker is killing it (request_stop() stops it gracefully): its
            # jobs stop and write nothing, their leases expire and they are reclaimed.
            for running in list(self._running.values()):
                running.abandon()
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            self.app.events.emit(EventName.WORKER_STOPPED, worker=self.id, **dict(self.stats))
        return self.stats

    async def _run_side_tasks(self) -> None:
        side: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "heartbeat": self._heartbeat_loop,
            "presence": self._presence_loop,
            "tally": self._tally_loop,
            "promoter": self._promote_loop,
            "reclaimer": self._reclaim_loop,
            "sweeper": self._sweep_loop,
            "alerts": self._alerts_loop,
            **{
                f"step-{s.name}": functools.partial(self._every, s.interval, s.step)
                for s in self.app.worker_steps
            },
        }
        tasks: dict[asyncio.Task[None], str] = {
            asyncio.create_task(fn(), name=f"genqueue-{name}"): name for name, fn in side.items()
        }
        fetcher = asyncio.create_task(self._fetch_loop(), name="genqueue-fetcher")
        tasks[fetcher] = "fetcher"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                if finished is not fetcher and finished.exception() is not None:
                    log.error(
                        "worker side task %r died; stopping",
                        tasks[finished],
                        exc_info=finished.exception(),
                    )
                    self._stop.set()
            if fetcher not in done:
                await fetcher
            await self._wait_running()
        finally:
            # Side loops also stop on the flag: a cancellation swallowed inside a client
            # library (seen with redis-py) must not leave a loop spinning forever.
            self._stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if fetcher.done() and not fetcher.cancelled() and fetcher.exception() is not None:
            raise fetcher.exception()  # type: ignore[misc]

    async def _wait_running(self) -> None:
        """Let running jobs finish within the grace period, then release the rest."""
        pending = [r.task for r in self._running.values() if r.task is not None]
        if pending and not self._force:
            await asyncio.wait(pending, timeout=self.settings.shutdown_grace)
        for running in list(self._running.values()):
            self._release(running)
        rest = [r.task for r in self._running.values() if r.task is not None]
        if rest:
            await asyncio.wait(rest)

    def _release(self, running: RunningJob) -> None:
        """Give a running job back to the queue; a sync task's thread is waited for."""
        if running.release_it(force=self._force):
            self._overrun(running, "shutdown")

    def _overrun(self, running: RunningJob, reason: str) -> None:
        """A sync task's attempt ended but its thread runs on: say so, once."""
        if running.overrun:
            return
        running.overrun = True
        self.stats["overrun"] += 1
        running_for = round(time.monotonic() - running.started, 3)
        announce_overrun(self.app.events, running.job, self.id, reason, running_for)

    async def _shutdown(self) -> None:
        await self._batcher.drain()

    # -- fetching -------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        idle = 0.005
        settings = self.settings
        while not self._stop.is_set():
            free = settings.concurrency - len(self._running)
            if free <= 0:
                await self._wait_for(self._slot_freed, None)
                continue
            jobs = await self._fetch(free)
            if jobs is None:
                continue  # storage unavailable: _fetch waited before we try again
            for job in jobs:
                self._start(job)
            if jobs:
                idle = 0.005
                continue
            if self.burst and not self._running:
                # Outcomes of finished jobs are stored by now; one more look decides.
                jobs = await self._fetch(free)
                if jobs == []:
                    self.burst_left = await delayed_jobs(self.app.backend, self.queues)
                    due_in = self.burst_left.next_in
                    if due_in is None or due_in > self.burst_horizon:
                        return
                    await self._idle(min(max(due_in, 0.01), settings.poll_interval))
                for job in jobs or ():
                    self._start(job)
                continue
            await self._idle(idle)
            idle = min(idle * 2, settings.poll_interval)

    async def _fetch(self, limit: int) -> list[Job] | None:
        """Claim up to ``limit`` jobs; None (after a backoff) if the storage failed.

        A worker outlives storage outages: it keeps its running jobs, waits, and fetches
        again once the backend answers (which is also when their outcomes get stored).
        """
        try:
            jobs = await self.app.backend.fetch(
                self.queues, self.id, limit, self.settings.lease_seconds
            )
        except StorageCorrupt:
            raise  # damage is not an outage: waiting cannot mend it, so the worker stops
        except Exception:
            self._fetch_failures += 1
            delay = min(0.25 * 2 ** (self._fetch_failures - 1), 10.0)
            log.warning(
                "fetching jobs failed (%d in a row); retrying in %.2f s",
                self._fetch_failures,
                delay,
                exc_info=self._fetch_failures == 1,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            return None
        if self._fetch_failures:
            log.warning("fetching jobs works again after %d failures", self._fetch_failures)
            self._fetch_failures = 0
        return jobs

    async def _idle(self, timeout: float) -> None:
        """Nothing was due: wait for new work, a freed slot or a stop, at most ``timeout``."""
        self._slot_freed.clear()
        waits = [
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._slot_freed.wait()),
            asyncio.ensure_future(self.app.backend.wait_for_work(self.queues, timeout)),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _wait_for(self, event: asyncio.Event, timeout: float | None) -> None:
        event.clear()
        stop = asyncio.ensure_future(self._stop.wait())
        other = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({stop, other}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            other.cancel()

    def _start(self, job: Job) -> None:
        running = RunningJob(job)
        self._running[job.id] = running
        running.task = asyncio.create_task(self._run_job(running), name=JOB_TASK_PREFIX + job.id)
        # Whatever happens to the task (even a cancellation before it ran), the slot is freed.
        running.task.add_done_callback(lambda _: self._free(running))

    def _free(self, running: RunningJob) -> None:
        # Only this attempt's entry: by the time a done callback runs, the job's next
        # attempt may have been fetched under the same id.
        if self._running.get(running.job.id) is running:
            del self._running[running.job.id]
            self._slot_freed.set()

    # -- running one job ------------------------------------------------------------------

    async def _run_job(self, running: RunningJob) -> None:
        job = running.job
        running.began = True
        try:
            try:
                outcome = await self._outcome(running)
            except GeneratorExit as exc:
                classifier = self.app.classifier_for(job.task, job.queue)
                outcome = running.thrown_in(exc, classifier)
            if outcome is not None:
                running.finishing = True
                await self._finish(job, outcome)
        except Exception:
            log.exception(
                "worker failed to store the outcome of job %s; its lease will expire", job.id
            )
        finally:
            self._free(running)

    def _given_up(self, running: RunningJob) -> bool:
        """Whether the worker gave up on the job, or is being cancelled itself."""
        main = self._main
        if main is not None and main.cancelling() > self._main_cancelling and not running.finishing:
            # asyncio.run tearing down cancels the worker and its jobs alike, maybe the jobs
            # first: their cancellation is the worker's, not their tasks' failure.
            running.abandoned = True
        return running.abandoned

    async def _outcome(self, running: RunningJob) -> Outcome | None:
        job = running.job
        if running.release:
            return released()  # the worker stopped before the job started
        task = self.app.tasks.find(job.task)
        problem = unrunnable(job, task)
        if problem is not None:
            return problem
        assert task is not None
        announce_started(self.app.events, job, self.id)
        ctx = JobContext(job, self.app, self.id, self._write_running, asyncio.get_running_loop())
        classifier = self.app.classifier_for(job.task, job.queue)
        if not task.is_async:
            running.thread = TaskThread(
                f"genqueue-task-{job.id}",
                lambda reason: self._overrun(running, reason),
                lambda: self._given_up(running),
            )
        try:
            outcome = await execute(
                task,
                ctx,
                classifier,
                running.thread,
                cancelled_by_worker=lambda: (
                    self._given_up(running) or running.cancelled_by_worker()
                ),
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = released()
        except LeaseLost:
            # Found out by the task instead of a heartbeat. The attempt is recorded as
            # ``worker_lost`` here, with what it spent and its remote id (a paid submit
            # must not vanish), unless another worker took the job meanwhile.
            self._lost(running)
            why = f"worker lost: {self.id} lost the lease of attempt {job.attempts}"
            await self._finish(job, worker_lost(job, classifier, why), reclaim=True)
            return None
        settled = running.settle(outcome)
        if settled is not None:
            running.finishing = True
            await ctx.flush()
        return settled

    async def _write_running(self, lease: Lease, update: RunningUpdate) -> bool:
        return await self.app.backend.update_running(lease, update)

    async def _finish(self, job: Job, outcome: Outcome, *, reclaim: bool = False) -> bool:
        now = await self.app.backend.time()
        ctx = PlanContext(
            now=now,
            worker_id=self.id,
            policy=self.app.policy_for(job.task, job.queue),
            retention=self.app.retention,
            reclaim=reclaim,
            keep_finished=self.app.keep_finished_for(job.task),
            keep_result=self.app.keep_result_for(job.task),
        )
        the_plan = plan(job, outcome, ctx)
        applied = await self._batcher.submit(the_plan.move)
        if applied:
            self.stats[the_plan.move.job.state.value] += 1
            announce(self.app.events, job, outcome, the_plan)
        else:
            log.warning(
                "job %s changed hands before its outcome (%s) was stored; discarded",
                job.id,
                outcome.kind.value,
            )
            self.stats["discarded"] += 1
        return applied

    # -- side tasks -----------------------------------------------------------------------

    async def _every(
        self, interval: float, step: Callable[[], Awaitable[object]], jitter: float = 0.0
    ) -> None:
        while not self._stop.is_set():
            pause = interval * random.uniform(1 - jitter, 1 + jitter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)
            if self._stop.is_set():
                return
            try:
                await step()
            except Exception:
                # A failed round (storage briefly unavailable) is retried next round.
                log.warning("worker maintenance step %s failed", step.__name__, exc_info=True)

    async def _heartbeat_loop(self) -> None:
        # Beats go on after a stop request while jobs still run (the grace period, a sync
        # task's thread that outlives it): a job's lease lasts as long as its attempt.
        while not (self._stop.is_set() and not self._running):
            await asyncio.sleep(self.settings.heartbeat_every)
            try:
                await self._heartbeat()
            except Exception:
                log.warning("worker maintenance step _heartbeat failed", exc_info=True)

    async def _heartbeat(self) -> None:
        leases = [
            Lease(r.job.id, r.job.attempts)
            for r in self._running.values()
            if not r.finishing and not r.lost
        ]
        if not leases:
            return
        lost = await self.app.backend.heartbeat(leases, self.settings.lease_seconds)
        for job_id in lost:
            running = self._running.get(job_id)
            if running is not None and running.lose():
                self._lost(running)

    def _lost(self, running: RunningJob) -> None:
        running.lost = True
        self.stats["lease_lost"] += 1
        job = running.job
        self.app.events.emit(EventName.JOB_LEASE_LOST, job_id=job.id, task=job.task, worker=self.id)

    async def _presence_loop(self) -> None:
        await self._every(self.settings.heartbeat_every, self._beat_presence)
        with contextlib.suppress(Exception):  # a stale line expires anyway
            await presence.leave(self.app, self.id)

    async def _alerts_loop(self) -> None:
        # Until the worker stops (a side task that returns early hides later deaths).
        await (self._alerts(self.id, self._stop) if self._alerts else self._stop.wait())

    async def _tally_loop(self) -> None:
        await self._every(5.0, self.app.tally.flush)

    async def _beat_presence(self) -> None:
        now = await self.app.backend.time()
        busy, conc = len(self._running), self.settings.concurrency
        info = presence.WorkerInfo(self.id, tuple(self.queues), conc, busy, self._started, now)
        await presence.beat(self.app, info, stale_after=self.settings.lease_seconds)

    async def _promote_loop(self) -> None:
        await self._every(min(self.settings.poll_interval * 2, 1.0), self._promote)

    async def _promote(self) -> None:
        await self.app.backend.promote(1000)

    async def _reclaim_loop(self) -> None:
        await self._every(self.settings.reclaim_every, self.reclaim)

    async def reclaim(self) -> int:
        """Fail the jobs of lost workers (expired leases); return how many were reclaimed."""
        return await maintenance.reclaim(self.app, functools.partial(self._finish, reclaim=True))

    async def _sweep_loop(self) -> None:
        # Jittered: workers started together would otherwise all sweep at once.
        await self._every(self.settings.sweep_interval, self.sweep, jitter=0.2)

    async def sweep(self) -> None:
        """Enforce retention: old finished jobs and expired dead letters are deleted."""
        await maintenance.sweep(self.app)

    async def _maintain_once(self) -> None:
        await maintenance.start_up(self.app, functools.partial(self._finish, reclaim=True))
