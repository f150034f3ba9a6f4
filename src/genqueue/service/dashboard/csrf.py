"""CSRF protection: every state-changing form carries the session's token, checked on POST.

The session cookie is SameSite=Strict already; the token is the second, independent
guard (older browsers, same-site subdomains). A POST also must not come from another
origin when the browser says where it comes from.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from starlette.requests import Request

    from genqueue.service.dashboard.session import Session

FIELD = "csrf"


class CsrfFailed(Exception):
    """The form's CSRF token is missing or wrong, or the request came from another origin."""


def verify(request: Request, session: Session, form: dict[str, list[str]]) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfFailed("the form was posted from another origin")
    sent = (form.get(FIELD) or [""])[0]
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfFailed("the form's CSRF token is missing or wrong; reload the page")
