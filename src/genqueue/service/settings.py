"""``ServiceSettings``: what ``genqueue serve`` and ``create_app`` are configured with.

Tokens come from the environment or the settings file, never from the command line (a
command line is visible to every user of the machine). The admin token may do
everything; a client token may enqueue jobs and read only the jobs it submitted.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from genqueue.errors import ConfigError

ADMIN_TOKEN_ENV = "GENQUEUE_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret
#: ``name:token,name:token``: named client tokens (the name is what the audit log shows).
CLIENT_TOKENS_ENV = "GENQUEUE_CLIENT_TOKENS"
DEFAULT_MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: str | None = None
    #: client name -> token
    client_tokens: Mapping[str, str] = field(default_factory=dict)
    #: Request bodies over this many bytes are refused before being read whole.
    max_body: int = DEFAULT_MAX_BODY
    #: Signs dashboard session cookies; random per process unless set (sessions then end
    #: when the server restarts).
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: Run workers inside the server process.
    workers: bool = True

    def __post_init__(self) -> None:
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ConfigError(f"{ADMIN_TOKEN_ENV} must be at least 16 characters")
        for name, token in self.client_tokens.items():
            if not name or len(token) < 16:
                raise ConfigError(f"client token {name!r} must be at least 16 characters")
        if self.admin_token is not None and self.admin_token in self.client_tokens.values():
            raise ConfigError("a client token must differ from the admin token")
        if not 1 <= self.max_body <= 64 * 1024 * 1024:
            raise ConfigError("max_body must be between 1 byte and 64 MiB")
        if not self.loopback and self.admin_token is None:
            raise ConfigError(
                f"refusing to listen on {self.host} without an admin token: set "
                f"{ADMIN_TOKEN_ENV}, or bind 127.0.0.1"
            )

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **changes: object
    ) -> ServiceSettings:
        env = os.environ if environ is None else environ
        clients: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in env.get(CLIENT_TOKENS_ENV, "").split(","))):
            name, sep, token = item.partition(":")
            if not sep:
                raise ConfigError(f"{CLIENT_TOKENS_ENV}: use name:token,name:token")
            clients[name.strip()] = token.strip()
        base: dict[str, object] = {
            "admin_token": env.get(ADMIN_TOKEN_ENV) or None,
            "client_tokens": clients,
        }
        return cls(**{**base, **changes})  # type: ignore[arg-type]
