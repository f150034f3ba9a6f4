"""Dashboard sessions: a signed, HttpOnly, SameSite=Strict cookie, granted for the admin token.

The cookie holds no secret of its own: who logged in, when, and the session's CSRF token,
signed with ``ServiceSettings.session_secret`` (itsdangerous) so it cannot be forged or
altered. Sessions end after ``MAX_AGE`` seconds, on logout, or when the secret changes.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from genqueue.service.settings import ServiceSettings

COOKIE = "genqueue_session"
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    who: str
    csrf: str


class LoginRequired(Exception):
    """Raised by a page when the request has no valid session."""


class Sessions:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._signer = URLSafeTimedSerializer(settings.session_secret, salt="genqueue-dashboard")

    def token_ok(self, token: str) -> bool:
        """The pasted token is the admin token (any token on loopback without one)."""
        expected = self.settings.admin_token
        if expected is None:
            # ServiceSettings refuses a non-loopback bind without an admin token.
            return True
        return hmac.compare_digest(token.encode(), expected.encode())

    def start(self, response: Response, request: Request) -> Session:
        session = Session(who="admin", csrf=secrets.token_urlsafe(32))
        value = self._signer.dumps({"who": session.who, "csrf": session.csrf})
        response.set_cookie(
            COOKIE,
            value,
            max_age=MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=_root(request),
        )
        return session

    def end(self, response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path=_root(request))

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._signer.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        return Session(who=str(data.get("who", "admin")), csrf=data["csrf"])

    def require(self, request: Request) -> Session:
        session = self.read(request)
        if session is None:
            raise LoginRequired
        return session


def _root(request: Request) -> str:
    return str(request.scope.get("root_path") or "") + "/"
