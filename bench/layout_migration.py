"""How long opening a Redis of key layout 1 takes with this genqueue (layout 2), which
migrates it first (see src/genqueue/backends/redis/layout.py), and what it saves.

A private ``redis-server`` (free port, no persistence) is filled with N dead letters by
an older checkout's code (``--old-src``, a layout 1 genqueue: ``git worktree add
/tmp/old 119f831``), shaped as ``dlq_size.py`` shapes them. Then this checkout's code
opens it: the time of ``App.open`` (the migration), Redis memory per entry before and
after, and a check that every entry is still listed and found by a filter.

    python bench/layout_migration.py --old-src /tmp/old/src --n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dlq_size import QUEUE, USERS, RedisRun, fill  # bench/ is on the path as a script

import genqueue
from genqueue import App, DLQFilter


async def _fill(url: str, n: int) -> None:
    async with App(url, strict_tasks=False) as app:
        await fill(app, n)


async def _open(url: str, n: int) -> dict[str, float]:
    began = time.perf_counter()
    app = App(url, strict_tasks=False)
    await app.open()
    opened = time.perf_counter() - began
    try:
        total = await app.dlq.count()
        one_user = await app.dlq.count(DLQFilter(user_id=USERS[0], queue=QUEUE))
        page = await app.dlq.list(DLQFilter(user_id=USERS[0]), limit=100)
    finally:
        await app.close()
    if total != n or not one_user or len(page.items) != min(100, one_user):
        raise SystemExit(f"after the migration: {total} entries, a page of {len(page.items)}")
    return {"open (s)": round(opened, 2), "entries": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-src", required=True, help="the src/ of a layout 1 checkout")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--fill-only", help=argparse.SUPPRESS)  # the child's mode: a URL
    args = parser.parse_args()
    if args.fill_only:
        asyncio.run(_fill(args.fill_only, args.n))
        return
    print(f"genqueue from {Path(genqueue.__file__).parent}", file=sys.stderr)
    with RedisRun() as run:
        empty = run.used()
        env = {**os.environ, "PYTHONPATH": str(Path(args.old_src).resolve())}
        cmd = [sys.executable, __file__, "--old-src", args.old_src, "--n", str(args.n)]
        print(f"filling {args.n:,} dead letters with {args.old_src}", file=sys.stderr)
        subprocess.run([*cmd, "--fill-only", run.url], env=env, check=True)
        layout = run.client.get("genqueue:layout")
        before = run.used()
        result = asyncio.run(_open(run.url, args.n))
        after = run.used()
        result.update(
            {
                "layout before": (layout or b"").decode(),
                "layout after": (run.client.get("genqueue:layout") or b"").decode(),
                "bytes per entry before": round((before - empty) / args.n),
                "bytes per entry after": round((after - empty) / args.n),
                "load average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
