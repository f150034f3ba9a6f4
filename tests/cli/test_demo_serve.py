"""``genqueue demo --serve``: the dashboard fills while the demo runs, and stays until Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.cli.conftest import Runner

TOKEN = "demo-admin-token-0123456789"


def _lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The process's output, line by line, read by a thread (never blocks the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")  # end of output

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def _until(lines: queue.Queue[str], pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = lines.get(timeout=120)
        seen.append(line)
        assert line, f"output ended before {pattern!r}:\n{''.join(seen)}"
        found = re.search(pattern, line)
        if found:
            return found


def test_the_dashboard_shows_the_demo_and_stays_until_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "GENQUEUE_ADMIN_TOKEN": TOKEN, "COLUMNS": "160"}
    env.pop("GENQUEUE_BACKEND", None)
    args = ["demo", "--serve", "--port", "0", "--jobs", "12", "--output", str(tmp_path / "out")]
    args += ["--backend", f"sqlite:///{tmp_path / 'demo.db'}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "genqueue.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen: list[str] = []
    lines, reader = _lines(proc)
    try:
        login = _until(lines, r"dashboard: (http://127\.0\.0\.1:\d+)/login", seen).group(1)
        assert TOKEN in seen[-1]
        with httpx.Client(base_url=login, timeout=30) as http:
            answer = http.post("/login", data={"token": TOKEN, "next": "/"})
            assert answer.status_code == 303
            assert http.get("/").status_code == 200
            _until(lines, r"the dashboard is still at", seen)
            assert proc.poll() is None  # still serving after the summary
            jobs = http.get("/api/v1/jobs", params={"queue": "pixellab", "limit": 100},
                            headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert jobs.status_code == 200 and len(jobs.json()["items"]) == 12
            assert "pixellab.generate" in http.get("/jobs").text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert "every job accounted for" in "".join(seen)


def test_serve_refuses_memory_and_a_taken_port(cli: Runner, tmp_path: Path) -> None:
    code, _, err = cli("demo", "--serve", "--jobs", "1", "--backend", "memory://")
    assert code == 1 and "memory://" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        db = f"sqlite:///{tmp_path / 'x.db'}"
        code, _, err = cli("demo", "--serve", "--port", port, "--jobs", "1", "--backend", db)
    assert code == 1 and "--port" in err and len(err.strip().splitlines()) == 1
