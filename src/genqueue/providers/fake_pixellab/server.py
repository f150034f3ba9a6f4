"""The socket layer of the fake PixelLab server (stdlib ``ThreadingHTTPServer``).

Owns: HTTP/1.1 keep-alive request handling, one thread per connection (daemon threads),
the :class:`~genqueue.providers.fake_pixellab.responses.Exchange` implementation over a
real socket (read the body by ``Content-Length``, answer, *really* drop the TCP
connection, hang until the client leaves or the server stops), tracking of open
connections so that :meth:`FakeHTTPServer.close_connections` can wake every blocked
handler, and the optional access log (off by default; it never contains headers).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from genqueue.providers.fake_pixellab.app import FakeApp
from genqueue.providers.fake_pixellab.control import PREFIX, Control
from genqueue.providers.fake_pixellab.responses import Response, reason

log = logging.getLogger("genqueue.fake_pixellab")

MAX_BODY_BYTES = 32 * 1024 * 1024
_HANG_TICK = 0.02


class FakeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`FakeApp`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: FakeApp, control: Control, access_log: bool
    ) -> None:
        self.app = app
        self.control = control
        self.access_log = access_log
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse-DNS lookup ``HTTPServer.server_bind`` does."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember (or forget) an open client connection."""
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Shut down every open client connection (wakes handlers blocked on reads)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; log anything else."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.error("fake PixelLab: error serving %s", client_address, exc_info=exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-pixellab/1.0"
    sys_version = ""

    def _fake(self) -> FakeHTTPServer:
        return cast(FakeHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # headers and body go out as separate writes
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._fake().track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._fake().track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        server = self._fake()
        exchange = SocketExchange(self, server.stopping)
        if exchange.path.startswith(PREFIX):
            answer = server.control.handle(exchange.method, exchange.path, exchange.read_body())
            exchange.send(answer)
        else:
            server.app.handle(exchange)
        exchange.finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self._fake().access_log:
            sys.stderr.write(f"fake-pixellab {self.address_string()} - {format % args}\n")


class SocketExchange:
    """:class:`~genqueue.providers.fake_pixellab.responses.Exchange` over one request."""

    def __init__(self, handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        self._h = handler
        self._stopping = stopping
        self._body: bytes | None = None
        self._dropped = False
        self._path = urlsplit(handler.path).path

    @property
    def method(self) -> str:
        return self._h.command.upper()

    @property
    def path(self) -> str:
        return self._path

    def header(self, name: str) -> str | None:
        return self._h.headers.get(name)

    def read_body(self) -> bytes:
        if self._body is None:
            self._body = b""
            if self._h.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._h.close_connection = True  # not supported: treat as empty, then close
                return self._body
            length = int(self._h.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_BODY_BYTES:
                self._body = self._h.rfile.read(length)
            elif length > MAX_BODY_BYTES:
                self._h.close_connection = True
        return self._body

    def send(self, response: Response) -> None:
        if self._dropped:
            return
        h = self._h
        try:
            h.send_response(response.status, reason(response.status))
            h.send_header("Content-Type", response.content_type)
            h.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(response.body)
        except OSError:
            h.close_connection = True

    def drop(self) -> None:
        self._dropped = True
        self._h.close_connection = True
        with contextlib.suppress(OSError):
            self._h.connection.shutdown(socket.SHUT_RDWR)

    def wait(self, seconds: float) -> bool:
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)

    def hang(self) -> None:
        conn = self._h.connection
        while not self._stopping.wait(_HANG_TICK):
            if _peer_closed(conn):
                return

    def finish(self) -> None:
        """Consume an unread body so the keep-alive connection stays in sync."""
        if not self._dropped and self._body is None:
            self.read_body()


def _peer_closed(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
