"""How long ``genqueue --help`` and ``genqueue dlq list`` take, start to exit.

Runs each command N times as a fresh process (what a person at a terminal waits for)
and prints the median and the fastest wall time, with the CPU time the process used
(user + system: less sensitive to other load on the machine than wall time). ``dlq
list`` reads a SQLite file holding ``--entries`` dead letter entries, made first with
the simulated ``demo.generate`` task.

    .venv/bin/python bench/cli_startup.py [--runs 21] [--entries 50]

Not a test: a time limit in the test suite would fail on a busy machine. The target
(issue 9) is under 0.25 s for both commands.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENQUEUE = Path(sys.executable).with_name("genqueue")


def _fill(url: str, entries: int) -> None:
    from genqueue.builtin import create_app
    from genqueue.settings import WorkerSettings
    from genqueue.worker import Worker

    logging.getLogger("genqueue").setLevel(logging.CRITICAL)  # no event per job on stderr

    async def main() -> None:
        app = create_app(url)
        async with app:
            for n in range(entries):
                await app.enqueue("demo.generate", {"scenario": "bad_key", "n": n}, user_id="u")
            await Worker(app, queues=["demo"], burst=True, settings=WorkerSettings()).run()

    asyncio.run(main())


def _measure(args: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([str(GENQUEUE), *args], env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "median": statistics.median(walls),
        "min": min(walls),
        "cpu_median": statistics.median(cpus),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--entries", type=int, default=50)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genqueue-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        _fill(url, options.entries)
        env = {**os.environ, "GENQUEUE_BACKEND": url, "COLUMNS": "80"}
        env.pop("GENQUEUE_APP", None)
        print(
            f"python {platform.python_version()}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}, {options.runs} runs each, "
            f"SQLite with {options.entries} dead letter entries, output to /dev/null"
        )
        for args in (["--help"], ["dlq", "list"]):
            result = _measure(args, options.runs, env)
            print(
                f"genqueue {' '.join(args):<10} median {result['median']:.3f} s  "
                f"fastest {result['min']:.3f} s  cpu median {result['cpu_median']:.3f} s"
            )


if __name__ == "__main__":
    main()
