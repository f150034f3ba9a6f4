"""Who is calling: the admin token, a named client token, or nobody.

Tokens come as ``Authorization: Bearer <token>`` and are compared in constant time. The
admin may do everything; a client may submit jobs and read or cancel only the jobs it
submitted (its name is kept in the job's ``meta["submitted_by"]``; anyone else's job is
answered 404, as if it did not exist). No token or an unknown one is 401; a known token
without the role is 403.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genqueue.service.settings import ServiceSettings

ADMIN = "admin"
#: The job meta key holding the name of the client that submitted the job.
SUBMITTED_BY = "submitted_by"

_bearer = HTTPBearer(auto_error=False, description="The admin token or a client token.")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: ``admin``, or a client by its configured name."""

    name: str
    is_admin: bool

    @property
    def audit_name(self) -> str:
        return ADMIN if self.is_admin else f"client:{self.name}"

    def owns(self, meta: dict[str, object]) -> bool:
        return self.is_admin or meta.get(SUBMITTED_BY) == self.name


def identify(settings: ServiceSettings, token: str) -> Caller | None:
    """The caller a token belongs to, or None. Every token is compared (constant time)."""
    found: Caller | None = None
    given = token.encode()
    if settings.admin_token is not None and hmac.compare_digest(
        given, settings.admin_token.encode()
    ):
        found = Caller(ADMIN, True)
    for name, secret in settings.client_tokens.items():
        if hmac.compare_digest(given, secret.encode()):
            found = found or Caller(name, False)
    return found


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


async def any_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Dependency: the admin or a client; 401 otherwise."""
    if credentials is None:
        raise _unauthorized("missing token: send Authorization: Bearer <token>")
    settings: ServiceSettings = request.app.state.service_settings
    caller = identify(settings, credentials.credentials)
    if caller is None:
        raise _unauthorized("unknown token")
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(any_caller)]) -> Caller:
    """Dependency: the admin only; 403 for a client token."""
    if not caller.is_admin:
        raise HTTPException(403, "this needs the admin token")
    return caller


AnyCaller = Annotated[Caller, Depends(any_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
