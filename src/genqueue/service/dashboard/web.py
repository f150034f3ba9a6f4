"""The dashboard's web plumbing: templates, security headers, forms and error pages.

Every dashboard route uses ``DashboardRoute``, which adds the security headers to every
response (pages, redirects, static files, errors) and turns the dashboard's control-flow
exceptions (no session, bad CSRF token, bad input, not found) into pages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from genqueue.errors import InvalidInput, NotFound, StateError
from genqueue.serialization import iso
from genqueue.service.dashboard.csrf import CsrfFailed
from genqueue.service.dashboard.session import LoginRequired

HERE = Path(__file__).parent
#: No inline script or style, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Dashboard forms are small; a bigger body is refused before being read whole.
MAX_FORM = 256 * 1024


def _when(ts: float | None) -> str:
    text = iso(ts)
    return text.replace("T", " ").replace("Z", "") if text else "-"


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["percent"] = _percent
    env.globals["query"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v})
    return env


TEMPLATES = _environment()


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    base = str(request.scope.get("root_path") or "")
    html = TEMPLATES.get_template(name).render(base=base, request=request, **context)
    return HTMLResponse(html, status_code=status)


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(str(request.scope.get("root_path") or "") + path, status_code=303)


async def read_form(request: Request) -> dict[str, list[str]]:
    """The url-encoded form of a POST, refused (413) past ``MAX_FORM`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM:
        raise FormTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormTooLarge
    try:
        return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=5000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the form could not be read") from exc


def field(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


class FormTooLarge(Exception):
    pass


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DashboardRoute(APIRoute):
    """Adds security headers to every response and maps dashboard exceptions to pages."""

    def get_route_handler(self) -> Handler:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                target = request.url.path[len(str(request.scope.get("root_path") or "")) :]
                response = redirect(request, "/login?" + urlencode({"next": target}))
            except CsrfFailed as exc:
                response = _error(request, 403, "Refused", str(exc))
            except FormTooLarge:
                response = _error(request, 413, "Too large", f"forms are limited to {MAX_FORM}")
            except NotFound as exc:
                response = _error(request, 404, "Not found", str(exc))
            except (InvalidInput, StateError) as exc:
                response = _error(request, 400, "Bad request", str(exc))
            response.headers.update(SECURITY_HEADERS)
            return response

        return handler


def _error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status, title=title, message=message)
