"""Where the time of one single enqueue on Redis goes.

Runs, in one process against a private ``redis-server`` (no persistence), interleaved
rounds of: a redis-py ``PING`` (the round trip alone), an ``EVALSHA`` of a script that
does nothing with the arguments of an enqueue (the round trip with the queue's keys), the
enqueue script itself called directly, ``Backend.enqueue``, ``App.enqueue`` and
``BlockingClient.enqueue`` (what synchronous code calls: the same enqueue, run on the
client's own event loop thread), and from redis-py's blocking client a ``PING``, an
``LPUSH`` of a 250-byte message (Huey's whole enqueue: one LPUSH of a pickled message of
about that size) and the ``EVALSHA`` of the script that does nothing: the floor under any
scripted enqueue. Each round times ``--n`` calls one at a time. Then it
reads the time each of the two scripts spends inside Redis (``INFO commandstats``, over
``--n`` calls of it alone). Medians over the rounds, in microseconds per call.

    python bench/enqueue_cost.py              # 8 rounds of 400 calls each
    python bench/enqueue_cost.py --rounds 12 --n 1000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis as redis_sync
from genqueue import App, JobRequest
from genqueue.backends.redis import codec
from genqueue.backends.redis.scripts import SCRIPTS

NOTHING = "EVALSHA of a script that does nothing, same arguments"


async def measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    app = App(url)

    @app.task("noop", queue="bench")
    async def noop(ctx: Any) -> None:
        pass

    await app.open()
    blocking = App(url)
    blocking.task("noop", queue="bench")(noop)
    client = await asyncio.to_thread(blocking.blocking)
    sync = redis_sync.Redis.from_url(url)
    try:
        for i in range(200):
            await app.enqueue("noop", {"i": i})
        backend: Any = app.backend
        redis = backend.conn.redis
        keys = backend.keys.queue("bench").names
        nothing = await redis.script_load("return {1}")
        sample = await app.enqueue("noop", {"i": 0})

        def job() -> Any:
            return app.queue.build(JobRequest("noop", {"i": 1}), time.time())

        async def script() -> None:
            await redis.evalsha(
                SCRIPTS["enqueue"].sha, len(keys), *keys, "", *codec.enqueue_args(job())
            )

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "PING (the round trip)": redis.ping,
            NOTHING: lambda: redis.evalsha(
                nothing, len(keys), *keys, "", *codec.enqueue_args(sample)
            ),
            "the enqueue script, called directly": script,
            "Backend.enqueue([job])": lambda: backend.enqueue([job()]),
            "App.enqueue(task, data)": lambda: app.enqueue("noop", {"i": 1}),
            # Blocks this loop while it waits, as it would block a web request's thread.
            "app.blocking().enqueue(task, data)": _as_awaitable(
                lambda: client.enqueue("noop", {"i": 1})
            ),
            "blocking client: PING": _as_awaitable(sync.ping),
            "blocking client: LPUSH of 250 bytes (Huey's enqueue)": _as_awaitable(
                lambda: sync.lpush("huey-like", b"m" * 250)
            ),
            f"blocking client: {NOTHING}": _as_awaitable(
                lambda: sync.evalsha(nothing, len(keys), *keys, "", *codec.enqueue_args(sample))
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                began = time.perf_counter()
                for _ in range(n):
                    await call()
                times[name].append((time.perf_counter() - began) / n * 1e6)
        out: dict[str, Any] = {name: round(statistics.median(v)) for name, v in times.items()}
        for name, call in [("the script that does nothing", calls[NOTHING]),
                           ("the enqueue script", script)]:  # fmt: skip
            await redis.config_resetstat()
            for _ in range(n):
                await call()
            stats = await redis.info("commandstats")
            out[f"{name}: time inside Redis"] = round(stats["cmdstat_evalsha"]["usec_per_call"])
        return out
    finally:
        sync.close()
        await asyncio.to_thread(client.close)
        await app.close()


def _as_awaitable(call: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return call()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="calls per round (default 400)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.redis_server import RedisServer  # the tests' private server, no persistence

    server = RedisServer().start()
    try:
        results = asyncio.run(measure(server.url(), args.n, args.rounds))
    finally:
        server.close()
    report = {
        "settings": {"n": args.n, "rounds": args.rounds, "cpus": os.cpu_count()},
        "load average": os.getloadavg(),
        "microseconds per call (median of rounds)": results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
