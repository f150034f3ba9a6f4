"""Request logic of the fake PixelLab server (no sockets here).

Owns: the order in which a request is handled: resolve the route (404/405 like FastAPI),
count the submit attempt, pick a fault, apply pre-processing faults (status, drop, hang,
delay), authenticate (401), validate (422), then bill and answer a sync call (529, 402,
200), an async submit (402, 429, 200/202 with the job id), a poll (404, 423, 200) or a
balance read; finally swap the answer for an ``accept_then_fail`` fault.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from genqueue.providers.fake_pixellab.faults import Fault, FaultBook
from genqueue.providers.fake_pixellab.jobs import COMPLETED, JobNotFound, Outcome, poll_payload
from genqueue.providers.fake_pixellab.options import FakeOptions
from genqueue.providers.fake_pixellab.png import ImageSpec, image_payload
from genqueue.providers.fake_pixellab.responses import Exchange, Response, detail, json_response
from genqueue.providers.fake_pixellab.routes import (
    ROUTES_BY_PATH,
    Route,
    UnknownCharacter,
    validate,
)
from genqueue.providers.fake_pixellab.state import (
    Accepted,
    FakeState,
    InsufficientCredits,
    Submit,
    SyncOverload,
    TokenRevoked,
    TooManyJobs,
)

log = logging.getLogger("genqueue.fake_pixellab")

POLL_PREFIX = "/v2/background-jobs/"
TargetKind = Literal["submit", "poll", "balance_v1", "balance_v2", "not_found", "not_allowed"]


@dataclass(frozen=True)
class Target:
    """What a method + path resolved to."""

    kind: TargetKind
    route: Route | None = None
    job_id: str = ""


def resolve(method: str, path: str) -> Target:
    """Map a request line onto the route table, FastAPI style (404, then 405)."""
    route = ROUTES_BY_PATH.get(path)
    if route is not None:
        return Target("submit", route) if method == route.method else Target("not_allowed")
    found: Target | None = None
    if path in ("/v1/balance", "/v2/balance"):
        found = Target("balance_v1" if path.startswith("/v1") else "balance_v2")
    elif path.startswith(POLL_PREFIX) and "/" not in path[len(POLL_PREFIX) :]:
        job_id = path[len(POLL_PREFIX) :]
        found = Target("poll", job_id=job_id) if job_id else None
    if found is None:
        return Target("not_found")
    return found if method == "GET" else Target("not_allowed")


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class FakeApp:
    """The fake's behaviour: state, faults and per-request handling."""

    def __init__(self, options: FakeOptions) -> None:
        self.options = options
        self.state = FakeState(options)
        self.faults = FaultBook()
        for rule in options.faults:
            self.faults.add(rule)

    def reset(self) -> None:
        """Forget everything; reinstall the configured faults."""
        self.state.reset()
        self.faults.clear()
        for rule in self.options.faults:
            self.faults.add(rule)

    # -- entry point -----------------------------------------------------------------------

    def handle(self, ex: Exchange) -> None:
        """Answer one API request (never raises)."""
        try:
            self._handle(ex)
        except Exception:
            log.exception("fake PixelLab: internal error on %s %s", ex.method, ex.path)
            self._send(ex, detail(500, "Internal Server Error"))

    def _handle(self, ex: Exchange) -> None:
        target = resolve(ex.method, ex.path)
        label = self.state.label_of(bearer(ex.header("authorization")))
        client_job_id = ex.header("x-client-job-id")
        if target.kind == "submit" and target.route is not None:
            self.state.note_submit(target.route.operation, client_job_id)
        fault = self.faults.pick(ex.method, ex.path, label)
        if fault is not None and self._pre_fault(ex, fault):
            return
        response = self._process(ex, target, label, client_job_id, fault)
        if fault is not None and fault.kind == "accept_then_fail":
            self._fail_after_accept(ex, fault)
        else:
            self._send(ex, response, fault.kind if fault else None)

    def _send(self, ex: Exchange, response: Response, fault_kind: str | None = None) -> None:
        self.state.count(response.status, fault_kind)
        ex.send(response)

    def _drop(self, ex: Exchange, fault_kind: str) -> None:
        self.state.count(None, fault_kind)
        ex.drop()

    # -- faults --------------------------------------------------------------------------

    def _pre_fault(self, ex: Exchange, fault: Fault) -> bool:
        """Apply a fault that replaces or precedes processing; True if it answered."""
        if fault.kind == "drop":
            if fault.after_body:
                ex.read_body()
            self._drop(ex, "drop")
            return True
        if fault.kind == "status":
            ex.read_body()
            self._send(ex, fault.response(), "status")
            return True
        if fault.kind == "hang":
            ex.read_body()
            self.state.count_hang()
            ex.hang()
            self._drop(ex, "hang")
            return True
        if fault.kind == "delay":
            ex.read_body()
            if ex.wait(fault.seconds):
                self._drop(ex, "delay")
                return True
        return False

    def _fail_after_accept(self, ex: Exchange, fault: Fault) -> None:
        if fault.then == "drop":
            self._drop(ex, "accept_then_fail")
        else:
            self._send(ex, fault.response(), "accept_then_fail")

    # -- processing ----------------------------------------------------------------------

    def _process(
        self,
        ex: Exchange,
        target: Target,
        label: str | None,
        client_job_id: str | None,
        fault: Fault | None,
    ) -> Response:
        if target.kind == "not_found":
            return detail(404, "Not Found")
        if target.kind == "not_allowed":
            return detail(405, "Method Not Allowed")
        body = ex.read_body()
        if label is None:
            return detail(401, "Invalid API token")
        if target.kind == "poll":
            return self._poll(label, target.job_id, client_job_id, fault)
        if target.kind in ("balance_v1", "balance_v2"):
            return json_response(200, self._balance(target.kind))
        assert target.route is not None
        return self._submit(ex, target.route, label, body, client_job_id=client_job_id, fault=fault)

    def _balance(self, kind: str) -> dict[str, Any]:
        usd, used = self.state.visible_balance()
        usd = round(usd, 6)
        total = self.options.subscription_generations
        left = max(0, total - used)
        if kind == "balance_v1":
            return {"type": "usd", "usd": usd}
        subscription = {"type": "generations", "status": "active", "plan": "Fake Tier",
                        "generations": float(left), "total": float(total)}  # fmt: skip
        return {"credits": {"type": "usd", "usd": usd}, "subscription": subscription}

    def _limited(self, status: int, message: str) -> Response:
        seconds = self.options.retry_after_seconds
        headers = {"Retry-After": str(seconds)} if seconds is not None else {}
        return detail(status, message, headers)

    def _latency(self, route: Route) -> float:
        default = self.options.sync_latency if route.kind == "sync" else (0.0, 0.0)
        low, high = self.options.latency.get(route.operation, default)
        if high <= low:
            return max(0.0, low)
        with self.state.lock:
            return self.state.rng.uniform(low, high)

    def _submit(
        self,
        ex: Exchange,
        route: Route,
        label: str,
        body: bytes,
        *,
        client_job_id: str | None,
        fault: Fault | None,
    ) -> Response:
        parsed = validate(route.model, body)
        if isinstance(parsed, list):
            return detail(422, parsed)
        try:
            specs = parsed.outputs(self.state.character)
        except UnknownCharacter:
            return detail(404, "Character not found")
        if route.kind == "sync":
            return self._sync(ex, route, label, specs[0], client_job_id)
        forced = None
        if fault is not None and fault.kind == "fail_job":
            forced = Outcome(fault.job_status, fault.detail)
        extra_id = parsed.character_ref()
        if extra_id is None and route.extra_id is not None:
            extra_id = str(uuid.uuid4())
        submit = Submit(label, route, specs, client_job_id, forced, extra_id)
        return self._async(ex, submit)

    def _sync(
        self, ex: Exchange, route: Route, label: str, spec: ImageSpec, client_job_id: str | None
    ) -> Response:
        try:
            with self.state.sync_slot(label):
                self.state.charge_sync(label, route, client_job_id)
                ex.wait(self._latency(route))
                image = image_payload(spec, 0, self.options.image_encoding)
        except SyncOverload:
            return self._limited(529, "Rate limit exceeded")
        except TokenRevoked:
            return detail(401, "Invalid API token")
        except InsufficientCredits:
            return detail(402, "Insufficient credits")
        return json_response(200, {"image": image, "usage": self.state.usage_of(route)})

    def _async(self, ex: Exchange, submit: Submit) -> Response:
        route = submit.route
        try:
            accepted = self.state.accept_async(submit)
        except TokenRevoked:
            return detail(401, "Invalid API token")
        except InsufficientCredits:
            return detail(402, "Insufficient credits")
        except TooManyJobs:
            return self._limited(429, "Too many concurrent jobs")
        ex.wait(self._latency(route))
        return json_response(route.submit_status, submit_body(route, accepted))

    def _poll(
        self, label: str, job_id: str, client_job_id: str | None, fault: Fault | None
    ) -> Response:
        try:
            if fault is not None and fault.kind == "fail_job":
                self.state.force(job_id, Outcome(fault.job_status, fault.detail), label)
            view = self.state.poll(label, job_id, client_job_id)
        except JobNotFound:
            return detail(404, "Job not found or doesn't belong to you")
        if not view.terminal and self.options.locked_while_processing:
            return detail(423, "Job is still being generated")
        last: dict[str, Any] | None = None
        job = view.job
        if view.terminal and job.status == COMPLETED:
            opts = self.options
            last = job.result(opts.image_encoding, opts.result_shape, opts.max_images_per_job)
        elif view.terminal:
            last = {"detail": job.forced.detail if job.forced else "Generation failed"}
        return json_response(200, poll_payload(view, last))


def submit_body(route: Route, accepted: Accepted) -> dict[str, Any]:
    """The async submit answer, with the job id where this route puts it."""
    ids = [job.id for job in accepted.jobs]
    body: dict[str, Any] = {}
    if route.id_field == "background_job_ids":
        body["background_job_ids"] = ids
    elif route.id_field is not None:
        body[route.id_field] = ids[0]
    body["status"] = "processing"
    if route.extra_id is not None:
        body[route.extra_id] = accepted.extra_id
    return body
