"""One job running in a worker, and what the worker may do to it while it runs.

The worker interrupts a running job for three reasons, and each is recorded for what it
is: shutdown (``release_it``: back to the queue, the attempt ``interrupted``), a lost
lease (``lose``: nothing is written, the job is somebody else's now), and giving up on it
(``abandon``: a forced stop while a sync task's thread runs, or the worker itself being
cancelled; like a killed worker it writes nothing, the lease expires and the job is
reclaimed as ``worker_lost``). An async task is interrupted by cancelling its asyncio
task; a sync task's thread cannot be stopped, so its job keeps its slot and its lease
until the thread returns. A cancellation the worker did not make is the task's own
failure (``execution.execute``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from genqueue.classify import ErrorClassifier
from genqueue.execution import Outcome, OutcomeKind, classify_raised
from genqueue.job import Job
from genqueue.threads import TaskThread

#: A job's asyncio task is named this plus the job id (the loop watchdog reads it).
JOB_TASK_PREFIX = "genqueue-job-"


def released() -> Outcome:
    return Outcome(OutcomeKind.RELEASE, reason="worker shut down")


@dataclass(slots=True)
class RunningJob:
    job: Job
    task: asyncio.Task[None] | None = None
    #: The job's asyncio task has started. A task cancelled before it starts never runs
    #: its code, so such a task is not cancelled: it sees ``release`` when it starts.
    began: bool = False
    release: bool = False
    lost: bool = False
    #: The worker gave up on the job (forced stop, or cancelled itself): nothing is written.
    abandoned: bool = False
    #: The outcome is being stored; heartbeats and cancellation leave it alone.
    finishing: bool = False
    #: The thread of a sync task (None for async tasks).
    thread: TaskThread | None = None
    #: The attempt ended (timeout, shutdown) while the thread ran on; reported once.
    overrun: bool = False
    started: float = field(default_factory=time.monotonic)

    def cancelled_by_worker(self) -> bool:
        return self.release or self.lost or self.abandoned

    def _interruptible(self) -> bool:
        task = self.task
        return not (task is None or task.done() or self.finishing or self.cancelled_by_worker())

    def release_it(self, *, force: bool) -> bool:
        """Shutdown gives up on the job; True if a sync task's thread runs on meanwhile.

        That thread is waited for, job, slot and lease alike; only a forced stop abandons
        it. Releasing the job while its thread runs could start a second copy.
        """
        if not self._interruptible():
            return False
        assert self.task is not None
        if self.thread is None:
            self.release = True
            if self.began:
                self.task.cancel()
            return False
        if not self.thread.alive:
            return False  # it returned: its outcome is being stored
        if not force:
            return True
        self.abandon()
        return False

    def abandon(self) -> None:
        """Give up on the job: stop it if it can be stopped, and write nothing."""
        if self._interruptible():
            assert self.task is not None
            self.abandoned = True
            self.task.cancel()  # a sync task's attempt stops waiting for its thread

    def lose(self) -> bool:
        """The job's lease is lost: stop it, write nothing; False if it has ended anyway."""
        if not self._interruptible():
            return False
        assert self.task is not None
        self.lost = True
        if self.thread is None:
            self.task.cancel()  # a thread cannot be stopped: its outcome is dropped instead
        return True

    def settle(self, outcome: Outcome) -> Outcome | None:
        """What to store of the attempt's ``outcome``, given what the worker did meanwhile."""
        if self.lost or self.abandoned:
            return None  # the job is not ours to write any more, or its thread still runs
        if self.release and outcome.kind is OutcomeKind.FAILED:
            return released()  # the task failed on its way out of the shutdown's cancellation
        return outcome

    def thrown_in(self, exc: GeneratorExit, classifier: ErrorClassifier) -> Outcome | None:
        """A GeneratorExit held by a future the task awaited: asyncio threw it into the job's
        asyncio task, which closed the coroutines in between, so it surfaces at the top."""
        if asyncio.current_task() is not self.task:
            raise exc  # the coroutine itself is being closed: not the task's doing
        failed = Outcome(OutcomeKind.FAILED, error=classify_raised(classifier, exc))
        return self.settle(failed)
