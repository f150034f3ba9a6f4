"""Fault injection rules for the fake PixelLab server.

Owns: the :class:`Fault` and :class:`FaultRule` models (also the JSON accepted by
``POST /_fake/faults``), the factory helpers (:func:`status_fault`, :func:`delay_fault`,
:func:`hang_fault`, :func:`drop_fault`, :func:`accept_then_fail`, :func:`fail_job`), the
thread-safe :class:`FaultBook` that matches requests to rules, and the seeded
:func:`demo_fault_mix`.

Matching: a rule's ``match`` is ``"METHOD /path-glob"`` (``*`` or no method = any) against
the full request path (e.g. ``POST /v2/create-image-*``), optionally only for one token
label. Every matching request bumps the rule's counter; the rule is *armed* from the
``nth`` match on, for ``times`` firings (None = forever), each time with ``probability``
(rolled from the rule's own seeded RNG, so a rule's decisions are deterministic given the
order of matching requests). When several rules are armed for a request, the first one
added wins; the others still count the request.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genqueue.providers.fake_pixellab.responses import (
    GATEWAY_HTML,
    Response,
    detail,
    json_response,
    reason,
)

FaultKind = Literal["status", "delay", "hang", "drop", "accept_then_fail", "fail_job"]
_METHODS = {"*", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class Fault(BaseModel):
    """What happens to a matched request.

    * ``status``: answer ``status`` with ``body`` (JSON) or ``text`` (non-JSON, with
      ``content_type``) plus ``headers``; the request is not processed (not charged).
    * ``delay``: sleep ``seconds`` after reading the body, then answer normally.
    * ``hang``: read the body, then never answer until the client gives up or the server
      stops; the request is not processed.
    * ``drop``: close the socket with no answer, before reading the body, or after it
      when ``after_body`` is true; the request is not processed.
    * ``accept_then_fail``: process the request normally (charged, job created), then send
      ``status``/``body``/``text`` (default 500) instead of the real answer, or drop the
      connection when ``then == "drop"``.
    * ``fail_job``: jobs created by the matched submit (or the polled job, on a poll
      route) end as ``job_status`` (default ``failed``) with ``last_response.detail``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    status: int = Field(default=500, ge=100, le=599)
    body: Any = None
    text: str | None = None
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = Field(default_factory=dict)
    seconds: float = Field(default=0.0, ge=0)
    after_body: bool = False
    then: Literal["status", "drop"] = "status"
    detail: str = "Generation failed"
    job_status: str = "failed"

    def response(self) -> Response:
        """The answer a ``status`` (or ``accept_then_fail``) fault sends."""
        if self.text is not None:
            return Response(self.status, self.text.encode(), self.content_type, dict(self.headers))
        if self.body is not None:
            return json_response(self.status, self.body, self.headers)
        return detail(self.status, reason(self.status), self.headers)


class FaultRule(BaseModel):
    """A fault plus when it applies (see the module docstring for the matching rules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str
    fault: Fault
    nth: int = Field(default=1, ge=1)
    times: int | None = Field(default=1, ge=1)
    token_label: str | None = None
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int = 0

    @field_validator("match")
    @classmethod
    def _check_match(cls, value: str) -> str:
        method, pattern = split_match(value)
        if method not in _METHODS or not pattern.startswith("/"):
            raise ValueError("match must look like 'POST /v2/create-image-*' or '/v2/*'")
        return value


def split_match(match: str) -> tuple[str, str]:
    """``"post /v2/x"`` -> ``("POST", "/v2/x")``; a bare path means any method."""
    parts = match.split(None, 1)
    if len(parts) == 2:
        return parts[0].upper(), parts[1].strip()
    return "*", match.strip()


def status_fault(
    status: int,
    *,
    body: Any = None,
    text: str | None = None,
    content_type: str = "text/html; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Fault:
    """Answer ``status`` with a JSON ``body`` or a raw ``text`` body (default ``detail``)."""
    return Fault(kind="status", status=status, body=body, text=text,
                 content_type=content_type, headers=headers or {})  # fmt: skip


def gateway_fault(status: int = 502) -> Fault:
    """An nginx-style HTML gateway error page (a non-JSON 5xx)."""
    html = GATEWAY_HTML.replace("502 Bad Gateway", f"{status} {reason(status)}")
    return status_fault(status, text=html)


def delay_fault(seconds: float) -> Fault:
    """Wait ``seconds`` before the normal answer."""
    return Fault(kind="delay", seconds=seconds)


def hang_fault() -> Fault:
    """Never answer (until the client times out or the server stops)."""
    return Fault(kind="hang")


def drop_fault(*, after_body: bool = False) -> Fault:
    """Close the connection without an answer, before or after reading the body."""
    return Fault(kind="drop", after_body=after_body)


def accept_then_fail(*, drop: bool = False, status: int = 500, text: str | None = None) -> Fault:
    """Process and charge the request, then answer ``status`` (or drop) instead."""
    return Fault(kind="accept_then_fail", then="drop" if drop else "status", status=status,
                 text=text)  # fmt: skip


def fail_job(detail_text: str = "Generation failed", *, job_status: str = "failed") -> Fault:
    """Make the matched submit's jobs (or the polled job) end as ``job_status``."""
    return Fault(kind="fail_job", detail=detail_text, job_status=job_status)


@dataclass
class _Armed:
    rule_id: str
    rule: FaultRule
    method: str
    pattern: str
    rng: random.Random
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, token_label: str | None) -> bool:
        if self.method not in ("*", method):
            return False
        if self.rule.token_label is not None and self.rule.token_label != token_label:
            return False
        return fnmatch.fnmatchcase(path, self.pattern)

    def armed(self) -> bool:
        in_window = self.seen >= self.rule.nth
        left = self.rule.times is None or self.fired < self.rule.times
        roll = self.rng.random() if self.rule.probability < 1.0 else 0.0
        return in_window and left and roll < self.rule.probability


@dataclass
class FaultBook:
    """The active fault rules of one fake (thread-safe)."""

    _rules: list[_Armed] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, rule: FaultRule) -> str:
        """Install ``rule``; returns its id (``"f1"``, ``"f2"``, ...)."""
        method, pattern = split_match(rule.match)
        with self._lock:
            rule_id = f"f{next(self._ids)}"
            rng = random.Random(f"{rule.seed}:{rule.match}:{rule.fault.kind}")
            self._rules.append(_Armed(rule_id, rule, method, pattern, rng))
        return rule_id

    def remove(self, rule_id: str) -> bool:
        """Remove one rule; False if there was none with that id."""
        with self._lock:
            before = len(self._rules)
            self._rules = [a for a in self._rules if a.rule_id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        """The rules as JSON-able dicts, with how often each matched and fired."""
        with self._lock:
            return [
                {"id": a.rule_id, **a.rule.model_dump(mode="json"), "seen": a.seen,
                 "fired": a.fired}
                for a in self._rules
            ]  # fmt: skip

    def pick(self, method: str, path: str, token_label: str | None) -> Fault | None:
        """Count this request against every matching rule; the first armed rule's fault."""
        chosen: _Armed | None = None
        with self._lock:
            for armed in self._rules:
                if not armed.matches(method, path, token_label):
                    continue
                armed.seen += 1
                if armed.armed() and chosen is None:
                    chosen = armed
            if chosen is None:
                return None
            chosen.fired += 1
            return chosen.rule.fault


def demo_fault_mix(seed: int = 0) -> list[FaultRule]:
    """A realistic, seeded mix for the demo: some 5xx (JSON and HTML), dropped connections
    (before and after the body), accept-then-fail submits, occasional 429s, a few 503s on
    polls and about 5% of async jobs ending ``failed``."""
    submit, poll = "POST /v2/*", "GET /v2/background-jobs/*"
    too_many = status_fault(429, body={"detail": "Too many concurrent jobs"},
                            headers={"Retry-After": "2"})  # fmt: skip
    mix: list[tuple[str, Fault, float]] = [
        (submit, gateway_fault(502), 0.05),
        (submit, status_fault(500, body={"detail": "Internal Server Error"}), 0.03),
        (submit, drop_fault(after_body=False), 0.02),
        (submit, drop_fault(after_body=True), 0.02),
        (submit, accept_then_fail(), 0.02),
        (submit, too_many, 0.03),
        (poll, gateway_fault(503), 0.03),
        (submit, fail_job("Generation failed: model error"), 0.05),
    ]
    return [
        FaultRule(match=m, fault=f, times=None, probability=p, seed=seed * 1000 + i)
        for i, (m, f, p) in enumerate(mix)
    ]
