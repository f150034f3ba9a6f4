"""Medians, ratios and the Markdown report of a benchmark run (``run.py`` writes the JSON).

``python bench/peers/run.py --render bench/results/latest.json`` re-renders the Markdown
from a JSON file without running anything.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

BASELINE = "genqueue-redis"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    digits: int = 0
    #: meaningless for file-backed configs (no ratio, no comparison)
    redis_only: bool = False


MAIN_METRICS = [
    Metric("enqueue_single", "enqueue single jobs/s", True),
    Metric("enqueue_bulk", "enqueue bulk jobs/s", True),
    Metric("drain_rate", "drain jobs/s", True),
    Metric("retry_total", "retry scenario s", False, 2),
    Metric("drain_rss_tree_mib", "worker RSS MiB", False),
    Metric("redis_cmds_per_job", "Redis cmds/job", False, 1, redis_only=True),
]
DIAG_METRICS = [
    Metric("drain_wall", "drain wall s", False, 1),
    Metric("drain_rss_largest_mib", "largest worker proc MiB", False),
    Metric("retry_rss_tree_mib", "retry-phase RSS MiB", False),
    Metric("redis_cpu_us_per_job", "Redis CPU us/job", False, redis_only=True),
    Metric("storage_bytes_per_job", "storage bytes/queued job", False),
]


def summarize(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def build(
    configs: list[dict[str, Any]],
    probes: dict[str, Any],
    runs: list[dict[str, Any]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The report: per config its versions, medians, worst losses, failures and raw runs.

    ``configs`` are dicts with name, baseline, file_backed and note."""
    out: dict[str, Any] = {}
    for cfg in configs:
        name = cfg["name"]
        mine = [r for r in runs if r["config"] == name]
        probe = probes.get(name, {})
        failures = [f"{name}: not run: {probe['error']}"] if "error" in probe else []
        for r in mine:
            failures += [f"{name} rep {r['rep']}: {e}" for e in r["errors"]]
        summary = {}
        for m in MAIN_METRICS + DIAG_METRICS:
            s = summarize(mine, m.key)
            if s is not None:
                summary[m.key] = s

        def worst(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [r[key] for r in mine if r.get(key) is not None]
            return max(values) if values else None

        out[name] = {
            **cfg,
            "versions": probe.get("versions", {}),
            "bulk": probe.get("bulk"),
            "n": mine[0]["n"] if mine else None,
            "nr": mine[0]["nr"] if mine else None,
            "reps": len(mine),
            "reps_ok": sum(1 for r in mine if not r["errors"]),
            "summary": summary,
            "worst": {k: worst(k) for k in ("drain_lost", "retry_lost", "retry_dup")},
            "failures": failures,
            "runs": mine,
        }
    return {"meta": meta, "configs": out}


# -- Markdown ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def ratio_text(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    r = value / base
    return f" ({r:.2f}x)" if r < 10 else f" ({r:.0f}x)"


def version_text(versions: dict[str, str]) -> str:
    if not versions:
        return "?"
    names = list(versions)
    extra = [f"{k} {v}" for k, v in versions.items() if k not in (names[0], "hiredis")]
    return versions[names[0]] + (f" ({', '.join(extra)})" if extra else "")


def median(configs: dict[str, Any], name: str, key: str) -> float | None:
    s = configs.get(name, {}).get("summary", {}).get(key)
    return s["median"] if s else None


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(report: dict[str, Any]) -> str:
    meta, configs = report["meta"], report["configs"]
    lines = [
        "# genqueue vs Python peer queues: side-by-side benchmark",
        "",
        f"- Run: {meta['started']} to {meta['finished']} ({meta['duration_min']:.1f} min): "
        f"`{meta['command'].strip()}`",
        f"- Machine: {meta['cpus']} vCPU ({meta['cpu_model']}), {meta['memory_gib']:.0f} GiB, "
        f"{meta['os']}, CPython {meta['python']}; redis-server {meta['redis']} of its own "
        "(nothing persisted), shared with the peers and the driver.",
        f"- N = {meta['n']:,} no-op jobs per drain, NR = {meta['nr']:,} jobs in the retry "
        f"scenario, single enqueue timed over the first {meta['single_n']:,} jobs; "
        f"{meta['reps']} interleaved repetition(s), each cell the median.",
        "- In brackets: the figure **÷ genqueue-redis's** (huey-sqlite: ÷ genqueue-sqlite's). "
        "For jobs/s below 1x means genqueue is faster; for seconds, MiB and commands above "
        "1x means genqueue is better.",
        "",
        *main_table(configs),
        "",
        *verdict(configs),
        "",
        *spread(configs),
        "",
        *diagnostics(configs),
        "",
        "## Failures",
        "",
    ]
    failures = [f for entry in configs.values() for f in entry["failures"]]
    lines += [f"- {f}" for f in failures] if failures else ["None."]
    lines += ["", "## Worker configurations", ""]
    lines += [f"- {name}: {entry['note']}" for name, entry in configs.items() if entry.get("note")]
    return "\n".join(lines) + "\n"


def main_table(configs: dict[str, Any]) -> list[str]:
    head = ["config", "version", "N / NR", *(m.label for m in MAIN_METRICS[:4])]
    head += ["lost drain / retry", "dup retry", *(m.label for m in MAIN_METRICS[4:])]
    rows = []
    for name, entry in configs.items():
        base = entry.get("baseline") if name != BASELINE else None
        n, nr = entry.get("n"), entry.get("nr")

        def cell(m: Metric, name: str = name, base: str | None = base) -> str:
            value = median(configs, name, m.key)
            ref = median(configs, base, m.key) if base else None
            if m.redis_only and configs[name].get("file_backed"):
                ref = None
            return fmt(value, m.digits) + ratio_text(value, ref)

        worst = entry["worst"]
        row = [f"**{name}**" if name.startswith("genqueue") else name]
        row += [version_text(entry["versions"]), f"{n:,} / {nr:,}" if n and nr else "—"]
        row += [cell(m) for m in MAIN_METRICS[:4]]
        row += [f"{fmt(worst['drain_lost'])} / {fmt(worst['retry_lost'])}", fmt(worst["retry_dup"])]
        row += [cell(m) for m in MAIN_METRICS[4:]]
        rows.append(row)
    return table(head, rows)


TIE = 0.05


def better_by(m: Metric, ours: float | None, theirs: float | None) -> str:
    """How many times better ours is; within 5 % either way it is called a tie."""
    if ours is None or theirs is None or not ours or not theirs:
        return "—"
    factor = ours / theirs if m.higher_is_better else theirs / ours
    if factor >= 1 + TIE:
        return f"{factor:.2f}x (better)"
    if factor <= 1 - TIE:
        return f"{factor:.2f}x (worse)"
    return f"{factor:.2f}x (tie)"


def verdict(configs: dict[str, Any]) -> list[str]:
    """genqueue against the best peer, figure by figure."""
    rows = []
    for m in MAIN_METRICS:
        peers = [
            (median(configs, name, m.key), name)
            for name, entry in configs.items()
            if not name.startswith("genqueue") and not entry.get("file_backed")
        ]
        peers = [p for p in peers if p[0] is not None]
        best = (max if m.higher_is_better else min)(peers) if peers else None
        g = median(configs, BASELINE, m.key)
        gs = median(configs, "genqueue-sqlite", m.key)
        hs = median(configs, "huey-sqlite", m.key)
        best_text = f"{fmt(best[0], m.digits)} ({best[1]})" if best else "—"
        rows.append(
            [
                m.label,
                fmt(g, m.digits),
                best_text,
                better_by(m, g, best[0] if best else None),
                fmt(gs, m.digits) if not m.redis_only else "n/a",
                fmt(hs, m.digits) if not m.redis_only else "n/a",
                better_by(m, gs, hs) if not m.redis_only else "n/a",
            ]
        )
    head = ["figure", "genqueue-redis", "best Redis peer", "genqueue-redis vs best"]
    head += ["genqueue-sqlite", "huey-sqlite", "genqueue-sqlite vs huey-sqlite"]
    note = (
        "The factor is how many times better genqueue's figure is (above 1x: genqueue "
        "better; within 5 % either way: a tie). Treat differences under ~1.5x between "
        "single runs as noise on this shared 2-vCPU machine; look at the spread below."
    )
    return ["## genqueue vs the best peer", "", *table(head, rows), "", note]


def spread(configs: dict[str, Any]) -> list[str]:
    rows = []
    for name, entry in configs.items():
        row = [name, f"{entry['reps_ok']}/{entry['reps']}"]
        for m in MAIN_METRICS:
            s = entry["summary"].get(m.key)
            row.append(f"{fmt(s['min'], m.digits)} to {fmt(s['max'], m.digits)}" if s else "—")
        rows.append(row)
    head = ["config", "reps without error", *(m.label for m in MAIN_METRICS)]
    return ["## Spread over the repetitions (min to max)", "", *table(head, rows)]


def diagnostics(configs: dict[str, Any]) -> list[str]:
    rows = [
        [name, *(fmt(median(configs, name, m.key), m.digits) for m in DIAG_METRICS)]
        for name in configs
    ]
    note = (
        "Drain wall s runs from starting the worker to the last completion (start-up "
        "included). Storage bytes/queued job is the growth of Redis `used_memory` after the "
        "queue was filled (file-backed configs: the size of their data files). Redis "
        "commands and CPU per job include ~0.1-0.3 commands/job of harness traffic (driver "
        "polling, counter flushes)."
    )
    head = ["config", *(m.label for m in DIAG_METRICS)]
    return ["## Diagnostics (medians)", "", note, "", *table(head, rows)]
