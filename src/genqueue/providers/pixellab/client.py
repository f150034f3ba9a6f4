"""An async PixelLab v2 client on httpx: explicit timeouts, typed errors, no retries.

Retrying is the queue's business (it knows what was charged and what a remote id means),
so this client makes exactly one request per call and reports what happened precisely:
whether the request reached PixelLab, whether it may have been charged, and the
``detail`` PixelLab gave. Sync versus async is decided from the response body
(``background_job_id``, ``background_job_ids`` or legacy ``job_id``), never from the
status code. The API key goes in the ``Authorization`` header and nowhere else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from genqueue.classify import ErrorKind, kind_for_status, parse_retry_after
from genqueue.providers.base import (
    Completed,
    GenerationRequest,
    Pending,
    ProviderError,
    RemoteRef,
    Usage,
)
from genqueue.providers.pixellab.decode import UndecodableImage, decode_image, elide, find_images
from genqueue.providers.pixellab.routes import Route, route_for
from genqueue.redact import Redactor

DEFAULT_BASE_URL = "https://api.pixellab.ai/v2"
BASE_URL_ENV = "PIXELLAB_BASE_URL"

_DONE = frozenset({"completed", "complete", "succeeded", "success", "done"})
_FAILED = frozenset({"failed", "error", "errored", "cancelled", "canceled"})


class RemoteJobGone(ProviderError):
    """Polling answered 404: the remote job is unknown (maybe not visible yet, maybe gone)."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the client tells its observer about one HTTP request (never its content)."""

    kind: str  # submit | poll | balance
    operation: str
    outcome: str  # the HTTP status code, "timeout" or "error" (no answer)
    seconds: float


RequestObserver = Callable[[RequestRecord], None]


class PixelLabClient:
    name = "pixellab"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        redactor: Redactor | None = None,
        read_timeout: float | None = None,
        observe: RequestObserver | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a PixelLab API key is required (set PIXELLAB_API_KEY)")
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.redactor = redactor or Redactor()
        self.redactor.add_secret(api_key)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._observe = observe
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "genqueue"},
            transport=transport,
            timeout=httpx.Timeout(60.0, connect=connect_timeout),
            event_hooks=event_hooks,  # e.g. tracing's, which sends traceparent along
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _timeout(self, read: float) -> httpx.Timeout:
        read = self._read_timeout if self._read_timeout is not None else read
        return httpx.Timeout(read, connect=self._connect_timeout, write=60.0, pool=10.0)

    async def _send(
        self, kind: str, operation: str, method: str, path: str, **options: Any
    ) -> httpx.Response:
        """One HTTP request, reported to the observer (metrics) with its outcome and time."""
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self._http.request(method, path, **options)
            outcome = str(response.status_code)
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        finally:
            if self._observe is not None:
                self._observe(
                    RequestRecord(kind, operation, outcome, time.perf_counter() - started)
                )

    # -- submit -----------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Completed | RemoteRef:
        route = route_for(request.operation)
        headers = {"X-Client-Job-Id": request.job_id}
        try:
            response = await self._send(
                "submit",
                route.operation,
                route.method,
                route.path,
                json=dict(request.params),
                headers=headers,
                timeout=self._timeout(route.read_timeout),
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, submitting=True) from None
        if response.status_code >= 400:
            raise self._status_error(response, submitting=True)
        return self._submitted(route, response)

    def _submitted(self, route: Route, response: httpx.Response) -> Completed | RemoteRef:
        body = self._json_body(response)
        ids = _job_ids(body, route)
        if ids:
            extra = {
                k: str(v) for k, v in body.items() if k.endswith("_id") and k not in route.id_fields
            }
            return RemoteRef(route.operation, ids, extra)
        images = find_images(body, route.result_fields)
        if images is None:
            raise self._unexpected(response, "neither images nor a job id in the response")
        return self._completed(body, images, response)

    # -- balance ----------------------------------------------------------------------------

    async def balance(self) -> dict[str, float]:
        """The account's balance: ``usd`` credits, and ``generations`` left on a subscription.

        Reads ``GET /balance`` in either shape: v2 ``{"credits": {"usd"}, "subscription":
        {"generations"}}`` or v1 ``{"type": "usd", "usd"}``. Raises ``ProviderError``.
        """
        try:
            response = await self._send(
                "balance", "balance", "GET", "/balance", timeout=self._timeout(30.0)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, submitting=False) from None
        if response.status_code >= 400:
            raise self._status_error(response, submitting=False, what="a balance read")
        return _balance(self._json_body(response))

    # -- poll -------------------------------------------------------------------------------

    async def poll(self, ref: RemoteRef) -> Pending | Completed:
        """Poll every remote job of ``ref``; completed once all are."""
        route = route_for(ref.operation)
        images: list[bytes] = []
        usage = Usage()
        raw: list[Any] = []
        for remote_id in ref.remote_job_ids:
            state = await self._poll_one(route, remote_id)
            if isinstance(state, Pending):
                return state
            images += state.images
            if state.usage:
                usage = Usage(
                    usage.usd + state.usage.usd, usage.generations + state.usage.generations
                )
            raw.append(state.raw)
        return Completed(images, usage, {"jobs": raw})

    async def _poll_one(self, route: Route, remote_id: str) -> Pending | Completed:
        path = route.poll_path.format(id=remote_id)
        try:
            response = await self._send(
                "poll", route.operation, "GET", path, timeout=self._timeout(30.0)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, submitting=False, remote_id=remote_id) from None
        if response.status_code == 423:
            return Pending("locked")
        if response.status_code == 404:
            raise RemoteJobGone(
                f"PixelLab does not know remote job {remote_id} (404)",
                kind=ErrorKind.REMOTE_LOST,
                status=404,
                detail=self._detail(response),
                remote_job_id=remote_id,
                maybe_charged=True,
            )
        if response.status_code >= 400:
            raise self._status_error(response, submitting=False, remote_id=remote_id)
        body = self._json_body(response)
        return self._job_state(route, remote_id, body, response)

    def _job_state(
        self, route: Route, remote_id: str, body: dict[str, Any], response: httpx.Response
    ) -> Pending | Completed:
        status = str(body.get("status") or "").lower()
        last = body.get("last_response")
        images = find_images(last, route.result_fields)
        if status in _FAILED or status == "review":
            detail = last.get("detail") or last.get("error") if isinstance(last, dict) else None
            raise ProviderError(
                f"PixelLab job {remote_id} {status}: {self._text(detail) or 'no detail'}",
                kind=ErrorKind.REMOTE_FAILED,
                status=response.status_code,
                detail=self._clean(detail),
                remote_job_id=remote_id,
                maybe_charged=True,
                usage=_usage(body),
            )
        if status in _DONE and images is not None:
            return self._completed(body, images, response)
        if status in _DONE:
            raise self._unexpected(response, f"job {remote_id} completed without images", remote_id)
        return Pending(status or "unknown")  # unknown words mean "still running"

    # -- results and errors ---------------------------------------------------------------------

    def _completed(
        self, body: dict[str, Any], images: list[Any], response: httpx.Response
    ) -> Completed:
        try:
            decoded = [decode_image(item) for item in images]
        except UndecodableImage as exc:
            raise self._unexpected(response, str(exc)) from None
        return Completed(decoded, _usage(body), elide(body))

    def _json_body(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise self._unexpected(response, "the response is not JSON") from None
        if not isinstance(body, dict):
            raise self._unexpected(response, "the response is not a JSON object")
        return body

    def _unexpected(
        self, response: httpx.Response, what: str, remote_id: str | None = None
    ) -> ProviderError:
        return ProviderError(
            f"unexpected PixelLab response ({response.status_code}): {what}",
            kind=ErrorKind.UNKNOWN,
            status=response.status_code,
            detail=self._text(response.text)[:300],
            remote_job_id=remote_id,
            maybe_charged=True,
        )

    def _status_error(
        self,
        response: httpx.Response,
        *,
        submitting: bool,
        remote_id: str | None = None,
        what: str | None = None,
    ) -> ProviderError:
        status = response.status_code
        # PixelLab's 529 means "rate limit exceeded"; every other 5xx is a server error.
        kind = ErrorKind.SERVER if status >= 500 and status != 529 else kind_for_status(status)
        detail = self._detail(response)
        return ProviderError(
            f"PixelLab answered {status} to {what or ('a submit' if submitting else 'a poll')}: "
            f"{self._text(detail) or response.reason_phrase}",
            kind=kind,
            status=status,
            detail=detail,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            remote_job_id=remote_id,
            # A 4xx (529 included: overloaded) rejects the request before any work. A 5xx
            # does not prove rejection: PixelLab may have accepted and billed the submit,
            # then failed to answer (a gateway timing out, a crash after the charge).
            maybe_charged=submitting and status >= 500 and status != 529,
        )

    def _transport_error(
        self, exc: httpx.HTTPError, *, submitting: bool, remote_id: str | None = None
    ) -> ProviderError:
        # Never (completely) sent: PixelLab cannot have acted on it.
        never_sent = isinstance(
            exc,
            httpx.ConnectError
            | httpx.ConnectTimeout
            | httpx.PoolTimeout
            | httpx.WriteError
            | httpx.WriteTimeout,
        )
        timeout = isinstance(exc, httpx.TimeoutException) and not never_sent
        kind = ErrorKind.TIMEOUT if timeout else ErrorKind.NETWORK
        what = "timed out" if timeout else "failed"
        return ProviderError(
            f"PixelLab request {what}: {type(exc).__name__}: {self._text(str(exc)) or 'no detail'}",
            kind=kind,
            remote_job_id=remote_id,
            # Once the request was sent, PixelLab may have started (and billed) the work.
            maybe_charged=submitting and not never_sent,
        )

    def _detail(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            return self._text(response.text)[:300] or None
        return self._clean(body.get("detail") if isinstance(body, dict) else body)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value)
        return self.redactor.deep(elide(value))

    def _text(self, value: Any) -> str:
        if value is None:
            return ""
        text = value if isinstance(value, str) else str(value)
        return self.redactor.text(" ".join(text.split()))[:500]


def _job_ids(body: dict[str, Any], route: Route) -> tuple[str, ...]:
    for field in route.id_fields:
        value = body.get(field)
        if isinstance(value, str) and value:
            return (value,)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return ()


def _usage(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None

    def number(key: str) -> float:
        value = usage.get(key)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        )

    return Usage(number("usd"), number("generations"))


def _balance(body: dict[str, Any]) -> dict[str, float]:
    def number(holder: Any, key: str) -> float | None:
        value = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    usd = number(body.get("credits"), "usd")
    found = {
        "usd": usd if usd is not None else number(body, "usd"),
        "generations": number(body.get("subscription"), "generations"),
    }
    return {unit: amount for unit, amount in found.items() if amount is not None}
