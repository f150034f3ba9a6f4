"""DLQ statistics of the PostgreSQL backend from the counters of migration 0005.

A trigger on ``dead_letters`` appends each entry's changes to ``dlq_count_deltas`` in the
transaction that adds or drops it; ``genqueue_dlq_rollup()`` folds them into
``dlq_counts``. Statistics of the whole DLQ (or of one queue) fold, then read a few
hundred counter rows instead of every entry; only the sample of each top fingerprint
(its newest entry) is read. Figures and their order are those of the grouping queries
(``dlq.stats``): most first, ties by value (no user last). Filtered statistics stay
queries over the matching entries.
"""

from __future__ import annotations

import math
from collections import defaultdict

import orjson

from genqueue.backends.base import day_of
from genqueue.backends.postgres.connection import Conn, fetch_all, fetch_one
from genqueue.backends.postgres.queries import SELECT_ENTRY, SELECT_JOB
from genqueue.backends.sqlite.rows import row_to_entry
from genqueue.entry import DLQStats, FingerprintGroup


class CountQueries:
    def __init__(self, s: str) -> None:
        self.rollup = f"SELECT {s}.genqueue_dlq_rollup()"
        self.counts = f"SELECT name, sum(value) FROM {s}.dlq_counts {{where}} GROUP BY name"
        self.newest = (
            f"SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM {s}.dead_letters d "
            f"JOIN {s}.jobs j ON j.id = d.job_id WHERE d.fingerprint = %s {{queue}} "
            "ORDER BY d.failed_at DESC, d.job_id DESC LIMIT 1"
        )


def _ranked(counts: dict[str | None, float]) -> dict[str, int]:
    """Most first, ties by value with None (no user) last, like ORDER BY c DESC, 1."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    return {("(none)" if k is None else k): int(v) for k, v in items}


async def stats(conn: Conn, q: CountQueries, queue: str | None, top: int) -> DLQStats:
    await fetch_all(conn, q.rollup, ())
    where, params = ("WHERE queue = %s", [queue]) if queue is not None else ("", [])
    groups: dict[str, dict[str | None, float]] = defaultdict(dict)
    fp_tasks: dict[str, set[str]] = defaultdict(set)
    total = 0
    for raw_name, raw_value in await fetch_all(conn, q.counts.format(where=where), params):
        name, value = str(raw_name), float(raw_value)
        if name == "n":
            total = int(value)
        elif name == "u":
            groups["u"][None] = value
        elif name.startswith("ft:"):
            fingerprint, task = orjson.loads(name[3:])
            if value > 0.5:
                fp_tasks[fingerprint].add(task)
        else:
            prefix, _, rest = name.partition(":")
            groups[prefix][rest] = value
    prints = sorted(((str(k), int(v)) for k, v in groups["f"].items()), key=_by_count)
    top_groups = [
        await _group(conn, q, queue, (fp, n, sorted(fp_tasks[fp]))) for fp, n in prints[:top]
    ]
    days = sorted((int(k), int(v)) for k, v in groups["d"].items() if k is not None)
    return DLQStats(
        total=total,
        by_kind=_ranked(groups["k"]),
        by_task=_ranked(groups["t"]),
        by_user=_ranked(groups["u"]),
        by_day={day_of(day * 86400): n for day, n in days},
        top_fingerprints=top_groups,
        cost_lost={
            str(k): round(v, 6)
            for k, v in groups["c"].items()
            if not math.isclose(v, 0, abs_tol=1e-9)
        },
    )


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


async def _group(
    conn: Conn, q: CountQueries, queue: str | None, found: tuple[str, int, list[str]]
) -> FingerprintGroup:
    fingerprint, count, tasks = found
    sql = q.newest.format(queue="AND d.queue = %s" if queue is not None else "")
    row = await fetch_one(conn, sql, [fingerprint] if queue is None else [fingerprint, queue])
    sample = row_to_entry(row) if row else None
    error = sample.job.last_error if sample else None
    return FingerprintGroup(
        fingerprint=fingerprint,
        count=count,
        error_kind=sample.error_kind.value if sample else "",
        error_type=error.type if error else "",
        sample_message=error.message if error else (sample.reason if sample else ""),
        tasks=tasks,
    )
