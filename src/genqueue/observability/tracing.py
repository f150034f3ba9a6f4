"""Tracing switched on or off: the hooks the core calls, and which implementation it gets.

The core calls three hooks on ``app.tracing``: ``send(jobs)`` around an enqueue,
``attempt(job)`` around each run of a task, and ``http_hooks()`` for the provider's httpx
client. ``Tracing`` (this module) is the off switch: every hook does nothing, and nothing
here imports OpenTelemetry, so genqueue without the ``otel`` extra pays no import cost.
``OtelTracing`` (``genqueue.observability.otel``) is loaded only when tracing is on.

Tracing is opt-in: ``App(tracing=True)`` or ``GENQUEUE_OTEL=1`` (so a worker started
from the command line can be traced without code changes). Having opentelemetry-api
installed, or a tracer provider configured, is not enough on its own: another library
may have pulled it in, and the trace context genqueue stores on each job should be a
decision. Asking for tracing without the extra installed is a configuration error.

This module must not: import OpenTelemetry, or let tracing fail a job or an enqueue.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from genqueue.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    import httpx

    from genqueue.execution import Outcome
    from genqueue.job import Job

#: Set to 1 (true, yes, on) to switch tracing on for apps that do not say either way.
TRACING_ENV = "GENQUEUE_OTEL"
#: Where a job carries the W3C trace context of its enqueue (``traceparent``, ``tracestate``).
TRACE_META = "trace"

HttpHook = Callable[["httpx.Request"], Awaitable[None]]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class AttemptSpan:
    """The span of one attempt, told how the attempt ended (this one records nothing)."""

    def ended(self, outcome: Outcome) -> Outcome:
        return outcome


# Shared and reusable: switched off, the hooks cost a method call and nothing more.
_NO_SPAN = AttemptSpan()
_NO_ATTEMPT = contextlib.nullcontext(_NO_SPAN)
_NOTHING = contextlib.nullcontext()


class Tracing:
    """Tracing off: every hook is a no-op."""

    enabled = False

    def send(self, jobs: Sequence[Job]) -> AbstractContextManager[None]:
        """Around storing ``jobs``: on, a producer span whose context goes into each job."""
        return _NOTHING

    def attempt(self, job: Job) -> AbstractContextManager[AttemptSpan]:
        """Around one run of ``job``'s task: on, a consumer span, current while it runs."""
        return _NO_ATTEMPT

    def http_hooks(self) -> dict[str, list[HttpHook]]:
        """httpx event hooks for provider clients: on, they add ``traceparent``."""
        return {}


def tracing_for(setting: bool | Tracing | None) -> Tracing:
    """The tracing an app asked for: ``True``/``False``, an instance, or ``None`` (the env)."""
    if isinstance(setting, Tracing):
        return setting
    if setting is None:
        setting = _from_env()
    if not setting:
        return Tracing()
    return otel_tracing()


def otel_tracing() -> Tracing:
    """OpenTelemetry tracing with the global tracer provider; needs ``genqueue[otel]``."""
    try:
        from genqueue.observability.otel import OtelTracing
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("opentelemetry"):
            raise MissingExtra("opentelemetry-api", "otel") from exc
        raise
    return OtelTracing()


def _from_env() -> bool:
    raw = os.environ.get(TRACING_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{TRACING_ENV} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
