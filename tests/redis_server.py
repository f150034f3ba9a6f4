"""Real ``redis-server`` processes for tests: never the machine's own Redis.

``RedisServer`` starts ``redis-server`` from PATH on a free port in a temporary directory
(persistence off unless asked), and can be killed and restarted on the same port and
data directory, for chaos tests. The conformance suite shares one server per test
session; ``redis_url_for_test()`` gives each test its own key prefix on it.

Without ``redis-server`` the Redis tests are skipped with a message, except when the
``CI`` environment variable is set: then they fail, so CI cannot go green by skipping.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

_SESSION_SALT = uuid.uuid4().hex[:8]


def redis_server_binary() -> str:
    """The path of ``redis-server``; skips (or fails under CI) when there is none."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not on PATH: install Redis (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(
        self,
        *,
        aof: bool = False,
        appendfsync: str = "always",
        extra: list[str] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="genqueue-redis-")
        self.dir = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        self.aof = aof
        self.appendfsync = appendfsync
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str | None = None, **options: str) -> str:
        query = {"prefix": prefix, **options} if prefix else options
        text = "&".join(f"{k}={v}" for k, v in query.items())
        return f"redis://127.0.0.1:{self.port}/0" + (f"?{text}" if text else "")

    def start(self, timeout: float = 15.0) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", self.appendfsync,
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown save, like a crash."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.send_signal(signal.SIGCONT)
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_session: RedisServer | None = None


def session_server() -> RedisServer:
    """One server for the whole test session, started on first use."""
    global _session  # noqa: PLW0603 - one server per test process, stopped at exit
    if _session is None or _session.process is None:
        _session = RedisServer().start()
        atexit.register(_session.close)
    return _session


def test_prefix() -> str:
    """A key prefix unique to the running test (stable within it)."""
    node = os.environ.get("PYTEST_CURRENT_TEST", uuid.uuid4().hex)
    node = node.rsplit(" (", 1)[0]
    return "t" + hashlib.sha1((_SESSION_SALT + node).encode()).hexdigest()[:16]


def redis_url_for_test(**options: str) -> str:
    return session_server().url(test_prefix(), **options)
