"""The app: one backend, the registered tasks, and the policies that apply to them.

An ``App`` is what user code creates and what ``--app module:obj`` points at. It owns
no global state: workers, the CLI and the HTTP service each take an app. Policies are
resolved most specific first: task options, then queue options, then the app's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from genqueue.analytics import Analytics, Tally, analytics
from genqueue.backends import Backend, create_backend
from genqueue.classify import ClassifierRules, ErrorClassifier
from genqueue.clock import SYSTEM_CLOCK, Clock
from genqueue.deadletter import DeadLetterQueue
from genqueue.errors import ConfigError
from genqueue.events import Events
from genqueue.job import Job
from genqueue.observability.tracing import Tracing, tracing_for
from genqueue.queue import Queue
from genqueue.redact import Redactor
from genqueue.retry import RetryPolicy
from genqueue.settings import QueueOptions, Retention, backend_url
from genqueue.task import Task, TaskFunction, TaskOptions, TaskRegistry, seconds_to_keep

if TYPE_CHECKING:
    from genqueue.blocking import BlockingClient
    from genqueue.entry import Page
    from genqueue.job import JobState


@dataclasses.dataclass(frozen=True)
class WorkerStep:
    name: str
    interval: float
    step: Callable[[], Awaitable[object]]


log = logging.getLogger("genqueue")


class App:
    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        retry: RetryPolicy | None = None,
        classifier: ClassifierRules | None = None,
        queues: Mapping[str, QueueOptions] | None = None,
        retention: Retention | None = None,
        clock: Clock | None = None,
        strict_tasks: bool = True,
        redactor: Redactor | None = None,
        events: Events | None = None,
        tracing: bool | Tracing | None = None,
    ) -> None:
        self.clock = clock or SYSTEM_CLOCK
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = create_backend(backend_url(backend), clock=self.clock)
        self.retry = retry or RetryPolicy()
        self.classifier_rules = classifier or ClassifierRules()
        self.queue_options = dict(queues or {})
        self.retention = retention or Retention()
        self.strict_tasks = strict_tasks
        self.redactor = redactor or Redactor()
        self.events = events or Events(clock=self.clock)
        if self.events.clock is None:
            self.events.clock = self.clock  # Event.at by the app's clock, like stored times
        #: OpenTelemetry spans: True, False, a Tracing, or None for ``GENQUEUE_OTEL``.
        self.tracing = tracing_for(tracing)
        #: Counts job events per minute for analytics (flushed by workers and on close).
        self.tally = Tally(self)
        self.tasks = TaskRegistry()
        self.queue = Queue(self)
        self.dlq = DeadLetterQueue(self)
        #: Steps every worker of this app runs periodically (alerts, auto-redrive...).
        self.worker_steps: list[WorkerStep] = []
        self._open = False

    def periodic(self, name: str, interval: float, step: Callable[[], Awaitable[object]]) -> None:
        """Have every worker of this app call ``step`` every ``interval`` seconds (a step
        that must run once across workers elects a leader itself)."""
        if interval <= 0:
            raise ConfigError(f"interval of {name!r} must be > 0")
        self.worker_steps.append(WorkerStep(name, interval, step))

    def __repr__(self) -> str:
        return f"<App backend={self.backend.url} tasks={len(self.tasks)}>"

    # -- tasks ----------------------------------------------------------------------------

    @overload
    def task(self, fn: TaskFunction, /) -> Task: ...

    @overload
    def task(
        self,
        name: str | None = None,
        /,
        *,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        classifier: ClassifierRules | None = None,
        keep_finished: float | timedelta | None = None,
        keep_result: bool = True,
    ) -> Callable[[TaskFunction], Task]: ...

    def task(
        self,
        name: str | TaskFunction | None = None,
        /,
        *,
        queue: str = "default",
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        classifier: ClassifierRules | None = None,
        keep_finished: float | timedelta | None = None,
        keep_result: bool = True,
    ) -> Task | Callable[[TaskFunction], Task]:
        """Register a task: ``@app.task``, ``@app.task("name", queue=..., max_retries=...)``.

        ``keep_finished``: how long this task's completed and cancelled jobs are kept
        (seconds or a ``timedelta``; 0 deletes them as they finish), instead of the app's
        ``Retention.finished_jobs``. ``keep_result=False``: completed jobs do not store
        what the task returned."""
        options = TaskOptions(
            queue=queue,
            retry=retry,
            max_retries=max_retries,
            timeout=timeout,
            classifier=classifier,
            keep_finished=None if keep_finished is None else seconds_to_keep(keep_finished),
            keep_result=keep_result,
        )
        if callable(name):
            return self.tasks.add(Task(_default_name(name), name, options))

        def register(fn: TaskFunction) -> Task:
            return self.tasks.add(Task(name or _default_name(fn), fn, options))

        return register

    # -- policies -------------------------------------------------------------------------

    def policy_for(self, task_name: str, queue: str | None = None) -> RetryPolicy:
        task = self.tasks.find(task_name)
        queue = queue or (task.options.queue if task else "default")
        queue_options = self.queue_options.get(queue)
        policy = (
            (task.options.retry if task else None)
            or (queue_options.retry if queue_options else None)
            or self.retry
        )
        if task and task.options.max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=task.options.max_retries)
        return policy

    def classifier_for(self, task_name: str, queue: str) -> ErrorClassifier:
        rules = self.classifier_rules
        queue_options = self.queue_options.get(queue)
        if queue_options is not None:
            rules = rules.merged(queue_options.classifier)
        task = self.tasks.find(task_name)
        if task is not None:
            rules = rules.merged(task.options.classifier)
        return ErrorClassifier(rules, self.redactor)

    def keep_finished_for(self, task_name: str) -> float:
        """Seconds a finished (completed or cancelled) job of the task is kept."""
        task = self.tasks.find(task_name)
        if task is not None and task.options.keep_finished is not None:
            return task.options.keep_finished
        return self.retention.finished_jobs

    def keep_result_for(self, task_name: str) -> bool:
        """Whether a completed job of the task stores what the task returned."""
        task = self.tasks.find(task_name)
        return task is None or task.options.keep_result

    def use_backend(self, backend: str | Backend) -> None:
        """Point a closed app at another backend (the CLI's ``--backend``)."""
        if self._open:
            raise ConfigError("cannot change the backend of an open app")
        self.backend = (
            backend if isinstance(backend, Backend) else create_backend(backend, self.clock)
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if not self._open:
            await self.backend.open()
            self._open = True

    async def close(self) -> None:
        if self._open:
            if self.tally.pending:
                try:
                    await self.tally.flush()
                except Exception:  # analytics are not worth failing a shutdown for
                    log.warning("could not store the last analytics counts", exc_info=True)
            self._open = False
            await self.backend.close()

    async def analytics(
        self, window: float = 3600.0, *, task: str | None = None, top: int = 3
    ) -> Analytics:
        """Retry and redrive success rates, failure rates and top failures over a window
        (see ``genqueue.analytics``)."""
        return await analytics(self, window, task=task, top=top)

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def blocking(self) -> BlockingClient:
        """A client for synchronous code (Django, Flask, scripts); close it when done."""
        from genqueue.blocking import BlockingClient

        return BlockingClient(self)

    # -- producer shortcuts (see genqueue.queue.Queue) -------------------------------------

    async def enqueue(
        self, task: str | Task, data: Any = None, *, connection: Any = None, **options: Any
    ) -> Job:
        """See ``Queue.enqueue``; ``connection=`` enqueues inside your own PostgreSQL
        transaction (PostgreSQL backend only)."""
        return await self.queue.enqueue(task, data, connection=connection, **options)

    async def get(self, job_id: str) -> Job:
        return await self.queue.get(job_id)

    async def cancel(self, job_id: str, reason: str = "cancelled by request") -> Job:
        return await self.queue.cancel(job_id, reason)

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        return await self.queue.wait(job_id, timeout)

    async def list_jobs(self, *, state: JobState | str | None = None, **filters: Any) -> Page[Job]:
        return await self.queue.list(state=state, **filters)


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "tasks"
    return f"{module}.{getattr(fn, '__qualname__', getattr(fn, '__name__', 'task'))}"
