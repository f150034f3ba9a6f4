"""HTTP answers of the fake PixelLab server, independent of the socket layer.

Owns: the :class:`Response` value, JSON/``detail`` helpers in FastAPI's shape, and the
:class:`Exchange` protocol the request logic talks to (read the body, answer, drop the
connection, wait, hang), so the logic never touches sockets directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer: status, raw body, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (compact, UTF-8)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, "application/json", dict(headers or {}))


def detail(status: int, message: Any, headers: dict[str, str] | None = None) -> Response:
    """FastAPI's error shape: ``{"detail": message}``."""
    return json_response(status, {"detail": message}, headers)


def reason(status: int) -> str:
    """The standard reason phrase for ``status`` (``"Error"`` for unknown codes like 529)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Rate limit exceeded" if status == 529 else "Error"


class Exchange(Protocol):
    """One request as the fake's logic sees it; implemented over a socket by the server."""

    @property
    def method(self) -> str:
        """Upper-case HTTP method."""

    @property
    def path(self) -> str:
        """Path without the query string."""

    def header(self, name: str) -> str | None:
        """A request header (case-insensitive), or None."""

    def read_body(self) -> bytes:
        """The request body (read once, then cached)."""

    def send(self, response: Response) -> None:
        """Write a complete answer."""

    def drop(self) -> None:
        """Close the connection without answering."""

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the server is stopping (stop early)."""

    def hang(self) -> None:
        """Block until the client goes away or the server stops, then drop."""
