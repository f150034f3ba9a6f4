"""Tasks: named functions a worker runs, with their per-task options, and the registry.

A task function takes one argument, the ``JobContext`` (``ctx.data`` is the job's JSON
data, or a pydantic model instance when the task is declared ``(ctx: JobContext[Model])``:
see ``genqueue.typed``), and returns a JSON value. It may be ``async def`` or plain
``def``; plain ones run in a thread so they cannot block the worker's event loop.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from genqueue.classify import ClassifierRules
from genqueue.errors import ConfigError, InvalidInput, UnknownTask
from genqueue.retry import RetryPolicy, check_max_retries
from genqueue.typed import data_model_of, parse_data, validate_data

if TYPE_CHECKING:
    from genqueue.context import JobContext

TaskFunction = Callable[["JobContext"], Any] | Callable[["JobContext"], Awaitable[Any]]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _QUEUE_RE.match(name):
        raise InvalidInput(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '_', '.', ':' or '-'",
            field="queue",
        )
    return name


@dataclass(frozen=True)
class TaskOptions:
    queue: str = "default"
    #: Retry policy for this task; None uses the queue's, then the app's.
    retry: RetryPolicy | None = None
    #: Retries allowed; None takes the policy's ``max_retries``.
    max_retries: int | None = None
    #: Seconds an attempt may run before it fails as a timeout; None means no limit.
    timeout: float | None = None
    classifier: ClassifierRules | None = None
    #: Seconds this task's completed and cancelled jobs are kept (a ``timedelta`` is
    #: accepted); None: the app's ``Retention.finished_jobs``; 0: deleted as they finish.
    keep_finished: float | None = None
    #: False: a completed job records that it completed (attempts, times, cost), not
    #: what the task returned.
    keep_result: bool = True

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        if self.keep_finished is not None:
            object.__setattr__(self, "keep_finished", seconds_to_keep(self.keep_finished))
        if self.max_retries is not None:
            check_max_retries(self.max_retries)
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")


def seconds_to_keep(value: float | timedelta) -> float:
    """A retention as seconds (``timedelta`` or a number >= 0), or ``ConfigError``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (math.isfinite(seconds) and seconds >= 0)
    ):
        raise ConfigError(f"keep_finished must be seconds >= 0 or a timedelta, got {value!r}")
    return float(seconds)


class Task:
    """A registered task function and its options."""

    def __init__(self, name: str, fn: TaskFunction, options: TaskOptions) -> None:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid task name {name!r}")
        self.name = name
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        #: The pydantic model of a task declared ``(ctx: JobContext[Model])``, else None.
        self.data_model = data_model_of(fn)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def __call__(self, ctx: JobContext) -> Any:
        return self.fn(ctx)

    def validate_data(self, data: Any) -> Any:
        """Data to store for a job of this task: a typed task's is checked against its model
        (``InvalidInput`` naming the field) and stored as the model's plain JSON."""
        return data if self.data_model is None else validate_data(self.data_model, data)

    def parse_data(self, data: Any) -> Any:
        """Stored data as the task receives it: the model instance for a typed task."""
        return data if self.data_model is None else parse_data(self.data_model, data)


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> Task:
        if task.name in self._tasks and self._tasks[task.name].fn is not task.fn:
            raise ConfigError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name, list(self._tasks)) from None

    def find(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def queues(self) -> list[str]:
        return sorted({t.options.queue for t in self._tasks.values()})

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)
