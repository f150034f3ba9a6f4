"""Helpers to run real worker processes for the chaos tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Start and kill `genqueue worker` processes against one backend URL."""

    def __init__(self, url: str, ledger: Path) -> None:
        self.url = url
        self.ledger = ledger
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GENQUEUE_BACKEND": self.url,
            "CHAOS_LEDGER": str(self.ledger),
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        }

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "genqueue.cli.main", "worker",
            "--app", "tests.chaos.chaos_app:app", "--lease", "1", "--grace", "1",
            "--log-level", "warning", "--no-alerts", *args,
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env=self.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.procs.append(proc)
        return proc

    def lines(self, kind: str) -> Counter[str]:
        """How many ledger lines of ``kind`` each job id has."""
        if not self.ledger.exists():
            return Counter()
        return Counter(
            parts[1]
            for parts in (line.split() for line in self.ledger.read_text().splitlines())
            if parts[0] == kind
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()


CHAOS_BACKENDS = [b for b in BACKENDS if b in ("sqlite", "redis")]


@pytest.fixture(params=CHAOS_BACKENDS)
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on a shared backend: one SQLite file, or one Redis server."""
    if request.param == "redis":
        from tests.redis_server import redis_url_for_test

        url = redis_url_for_test()
    else:
        url = f"sqlite:///{tmp_path / 'chaos.db'}"
    pool = Workers(url, tmp_path / "ledger.txt")
    yield pool
    pool.stop_all()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
