"""Request bodies over ``ServiceSettings.max_body`` are refused with 413 before being read
whole: a declared ``Content-Length`` over the limit is refused at once, and a body sent
without one (chunked) is counted as it streams and cut off when it passes the limit."""

from __future__ import annotations

from typing import Any

from genqueue import serialization

Scope = dict[str, Any]
Message = dict[str, Any]


class _TooLarge(Exception):
    pass


class _Guard:
    """Counts the body bytes of one request; once over the limit, reading raises and the
    app's own answer is dropped (the middleware answers 413 instead)."""

    def __init__(self, receive: Any, send: Any, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.exceeded = False

    async def receive(self) -> Message:
        message: Message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                raise _TooLarge
        return message

    async def send(self, message: Message) -> None:
        if not self.exceeded:
            await self._send(message)


class BodyLimit:
    """ASGI middleware: 413 for bodies larger than ``max_body`` bytes."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, 400, "Content-Length must be a non-negative integer")
            return
        if declared is not None and declared > self.max_body:
            await _refuse(send, 413, self._message())
            return
        guard = _Guard(receive, send, self.max_body)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.exceeded:
                raise
        if guard.exceeded:
            await _refuse(send, 413, self._message())

    def _message(self) -> str:
        return f"the request body is larger than {self.max_body} bytes"


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _refuse(send: Any, status: int, message: str) -> None:
    body = serialization.dumps({"error": message, "field": "body"})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
