"""The ``/_fake/*`` control API of the fake PixelLab server (no auth; loopback only).

Owns: stats, reset, fault rules, balance, clock, token revoke/restore (by label) and
forcing a job's terminal state over HTTP. Every body is JSON; bad input answers 422 in
the same FastAPI shape as the API routes.

=========  ===============================  ==============================================
Method     Path                             Body / answer
=========  ===============================  ==============================================
GET        /_fake/health                    ``{"ok": true}``
GET        /_fake/stats                     the stats dict (see ``FakeState.snapshot``)
POST       /_fake/reset                     back to the configured state
GET        /_fake/faults                    ``{"faults": [rule + id, seen, fired]}``
POST       /_fake/faults                    a FaultRule or a list of them -> ``{"ids"}``
DELETE     /_fake/faults                    remove all rules
DELETE     /_fake/faults/{id}               remove one rule
POST       /_fake/balance                   ``{"usd": 12.5}``
POST       /_fake/clock                     ``{"advance_seconds": 600}``
POST       /_fake/tokens                    ``{"token": "...", "label": "..."}`` (add)
POST       /_fake/tokens/{label}/revoke     revoke; ``.../restore`` restores
POST       /_fake/jobs/{id}/fail            ``{"detail": "...", "status": "failed"}``
=========  ===============================  ==============================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from genqueue.providers.fake_pixellab.app import FakeApp
from genqueue.providers.fake_pixellab.faults import FaultRule
from genqueue.providers.fake_pixellab.jobs import JobNotFound, Outcome
from genqueue.providers.fake_pixellab.responses import Response, detail, json_response

PREFIX = "/_fake/"


class _BalanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    usd: float


class _ClockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    advance_seconds: float = Field(ge=0)


class _TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1)
    label: str = Field(min_length=1)


class _FailBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    detail: str = "Generation failed"
    status: str = "failed"


_RULES = TypeAdapter(FaultRule | list[FaultRule])


class BadInput(Exception):
    """A control body failed validation; carries the FastAPI ``detail`` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid control body")
        self.errors = errors


def _parse(adapter: Callable[[Any], Any], raw: bytes) -> Any:
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        pos = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        raise BadInput([{"type": "json_invalid", "loc": ["body", pos],
                         "msg": "JSON decode error", "input": {}}]) from exc  # fmt: skip
    try:
        return adapter(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise BadInput([{**e, "loc": ["body", *e["loc"]]} for e in errors]) from exc


class Control:
    """Dispatches ``/_fake/*`` requests onto a :class:`FakeApp`."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self._fixed: dict[tuple[str, str], Callable[[bytes], Response]] = {
            ("GET", "health"): lambda _: json_response(200, {"ok": True}),
            ("GET", "stats"): lambda _: json_response(200, app.state.snapshot()),
            ("POST", "reset"): self._reset,
            ("GET", "faults"): lambda _: json_response(200, {"faults": app.faults.describe()}),
            ("POST", "faults"): self._add_faults,
            ("DELETE", "faults"): self._clear_faults,
            ("POST", "balance"): self._balance,
            ("POST", "clock"): self._clock,
            ("POST", "tokens"): self._add_token,
        }

    def handle(self, method: str, path: str, body: bytes) -> Response:
        """Answer one control request."""
        rest = path[len(PREFIX) :].strip("/")
        try:
            handler = self._fixed.get((method, rest))
            if handler is not None:
                return handler(body)
            return self._dynamic(method, rest.split("/"), body)
        except BadInput as exc:
            return detail(422, exc.errors)

    def _dynamic(self, method: str, parts: list[str], body: bytes) -> Response:
        if method == "DELETE" and len(parts) == 2 and parts[0] == "faults":
            removed = self.app.faults.remove(parts[1])
            return json_response(200, {"removed": removed}) if removed else _not_found()
        if method == "POST" and len(parts) == 3 and parts[0] == "tokens":
            return self._token_state(parts[1], parts[2])
        if method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "fail":
            return self._fail_job(parts[1], body)
        return _not_found()

    def _reset(self, _: bytes) -> Response:
        self.app.reset()
        return json_response(200, {"reset": True})

    def _add_faults(self, body: bytes) -> Response:
        parsed = _parse(_RULES.validate_python, body)
        rules = parsed if isinstance(parsed, list) else [parsed]
        return json_response(200, {"ids": [self.app.faults.add(rule) for rule in rules]})

    def _clear_faults(self, _: bytes) -> Response:
        self.app.faults.clear()
        return json_response(200, {"cleared": True})

    def _balance(self, body: bytes) -> Response:
        usd = _parse(_BalanceBody.model_validate, body).usd
        self.app.state.set_balance(usd)
        return json_response(200, {"usd": usd})

    def _clock(self, body: bytes) -> Response:
        seconds = _parse(_ClockBody.model_validate, body).advance_seconds
        self.app.state.advance_clock(seconds)
        return json_response(200, {"advanced_seconds": seconds})

    def _add_token(self, body: bytes) -> Response:
        token = _parse(_TokenBody.model_validate, body)
        try:
            self.app.state.add_token(token.token, token.label)
        except ValueError as exc:
            return detail(409, str(exc))
        return json_response(200, {"label": token.label})

    def _token_state(self, label: str, action: str) -> Response:
        if action not in ("revoke", "restore"):
            return _not_found()
        try:
            self.app.state.set_revoked(label, action == "revoke")
        except KeyError:
            return _not_found()
        return json_response(200, {"label": label, "revoked": action == "revoke"})

    def _fail_job(self, job_id: str, body: bytes) -> Response:
        fail = _parse(_FailBody.model_validate, body or b"{}")
        try:
            self.app.state.force(job_id, Outcome(fail.status, fail.detail))
        except JobNotFound:
            return _not_found()
        return json_response(200, {"id": job_id, "status": fail.status})


def _not_found() -> Response:
    return detail(404, "Not Found")
