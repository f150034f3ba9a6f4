"""DLQ statistics of the SQLite backend from the counters of migration 0006.

Triggers on ``dead_letters`` keep per-queue counters (``dlq_counts``) in the transaction
that adds or drops an entry, so the statistics of the whole DLQ (or of one queue) read a
few hundred counter rows instead of every entry: 5 ms instead of 700 at 100,000 entries.
Figures and their order are those of the grouping queries (``queries.dlq_stats``): most
first, ties by value (no user first); only the sample of each top fingerprint (its
newest entry) is read. Filtered statistics stay queries over the matching entries.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict

import orjson

from genqueue.backends.sqlite.rows import SELECT_ENTRY, SELECT_JOB, row_to_entry, stacks_of
from genqueue.entry import DLQStats, FingerprintGroup

_COUNTS = "SELECT name, sum(value) FROM dlq_counts {where} GROUP BY name"
_NEWEST = f"""
SELECT {SELECT_ENTRY}, {SELECT_JOB} FROM dead_letters d JOIN jobs j ON j.id = d.job_id
WHERE d.fingerprint = ? {{queue}} ORDER BY d.failed_at DESC, d.job_id DESC LIMIT 1
"""


def _ranked(counts: dict[str | None, float]) -> dict[str, int]:
    """Most first, ties by value with None (no user) first, like ORDER BY c DESC, 1."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is not None, kv[0] or ""))
    return {("(none)" if k is None else k): int(v) for k, v in items}


def counted_stats(conn: sqlite3.Connection, queue: str | None, top: int) -> DLQStats:
    where, params = ("WHERE queue = ?", [queue]) if queue is not None else ("", [])
    groups: dict[str, dict[str | None, float]] = defaultdict(dict)
    fp_tasks: dict[str, set[str]] = defaultdict(set)
    total = 0
    for name, value in conn.execute(_COUNTS.format(where=where), params):
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
    prints = sorted(((k, int(v)) for k, v in groups["f"].items() if k), key=_by_count)
    return DLQStats(
        total=total,
        by_kind=_ranked(groups["k"]),
        by_task=_ranked(groups["t"]),
        by_user=_ranked(groups["u"]),
        by_day=dict(sorted((k, int(v)) for k, v in groups["d"].items() if k is not None)),
        top_fingerprints=[
            _group(conn, queue, fp, n, sorted(fp_tasks[fp])) for fp, n in prints[:top]
        ],
        cost_lost={
            str(k): round(v, 6)
            for k, v in groups["c"].items()
            if not math.isclose(v, 0, abs_tol=1e-9)
        },
    )


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _group(
    conn: sqlite3.Connection, queue: str | None, fingerprint: str, count: int, tasks: list[str]
) -> FingerprintGroup:
    sql = _NEWEST.format(queue="AND d.queue = ?" if queue is not None else "")
    params = [fingerprint] if queue is None else [fingerprint, queue]
    row = conn.execute(sql, params).fetchone()
    sample = row_to_entry(row, stacks_of(conn)) if row else None
    error = sample.job.last_error if sample else None
    return FingerprintGroup(
        fingerprint=fingerprint,
        count=count,
        error_kind=sample.error_kind.value if sample else "",
        error_type=error.type if error else "",
        sample_message=error.message if error else (sample.reason if sample else ""),
        tasks=tasks,
    )
