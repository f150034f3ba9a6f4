"""Webhook receivers for the notification tests, and the spec's signature check.

``spec_verify`` is written from the Standard Webhooks spec, independently of genqueue and
of the ``standardwebhooks`` package, so a signing bug cannot hide behind a shared helper.
``ScriptedReceiver`` answers through ``httpx.MockTransport``; ``LocalReceiver`` is a real
HTTP server on 127.0.0.1 in a thread, for the CLI and end-to-end tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from genqueue import FakeClock

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's test-vector secret
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 32 bytes!!!!!!").decode()


class SignatureError(AssertionError):
    pass


def spec_verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = 300
) -> None:
    """Raise ``SignatureError`` unless the request is signed per the spec."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = lower["webhook-timestamp"]
        signatures = lower["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc}") from None
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"timestamp {timestamp} outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise SignatureError("no matching v1 signature")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: One scripted answer: a status, (status, body[, headers]), or an exception to raise.
Answer = int | tuple[int, str] | tuple[int, str, dict[str, str]] | Exception


class ScriptedReceiver:
    """Answers requests in script order (then 200 forever) and records them."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[Received] = []
        self._lock = threading.Lock()

    def next_answer(self, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.requests.append(Received(headers, body))
            return self.answers.pop(0) if self.answers else 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        answer = self.next_answer(dict(request.headers), request.read())
        if isinstance(answer, Exception):
            raise answer
        status, text, headers = _parts(answer)
        return httpx.Response(status, text=text, headers=headers)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def verify_all(self, secret: str, *, now: float) -> None:
        for received in self.requests:
            spec_verify(secret, received.headers, received.body, now=now)

    @property
    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]


def _parts(answer: Answer) -> tuple[int, str, dict[str, str]]:
    if isinstance(answer, int):
        return answer, "ok" if answer < 300 else "", {}
    if isinstance(answer, tuple) and len(answer) == 2:
        return answer[0], answer[1], {}
    assert isinstance(answer, tuple) and len(answer) == 3
    return answer[0], answer[1], answer[2]


class LocalReceiver(ScriptedReceiver):
    """A real HTTP server on 127.0.0.1 with the same script; use ``with receiver.serve()``."""

    url = ""

    @contextmanager
    def serve(self, path: str = "/hook") -> Iterator[LocalReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver.next_answer({k.lower(): v for k, v in self.headers.items()}, body)
                if isinstance(answer, Exception):
                    self.close_connection = True  # a dropped connection
                    return
                status, text, headers = _parts(answer)
                data = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


class Sleeps:
    """An injected sleep: records the waits and moves the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
