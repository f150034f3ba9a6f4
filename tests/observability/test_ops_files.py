"""The ops files (Prometheus rules, Grafana dashboard) use exactly what genqueue exports.

The exported names and labels come from a real scrape: a scripted run on a memory app
moves every counter and histogram, and the backend gauges (provider ones included) are
read. Each expression in ``ops/`` may only name those series (or a series the rules
file records), with labels they carry. promtool, when present (always under CI),
checks the syntax and runs the alerts' unit tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from genqueue import App, ErrorKind, FakeClock, JobContext, RetryPolicy, Snooze, TaskError
from genqueue.cli.main import cli
from genqueue.events import EventName
from genqueue.observability.metrics import Metrics
from genqueue.providers.guard import ProviderGuard
from genqueue.providers.metrics import provider_readings
from genqueue.testing import run_until_idle
from tests.observability.promql import Query, concrete, read

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "genqueue-rules.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "genqueue-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "genqueue-dashboard.json"
README = ROOT / "README.md"

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
SEVERITIES = frozenset({"critical", "warning", "info"})

#: series name -> label -> the values seen
Exported = dict[str, dict[str, set[str]]]


# -- what genqueue exports ------------------------------------------------------------


async def scripted_scrape() -> tuple[str, set[str]]:
    """A run that moves every metric; the exposition text and the registered families."""
    clock = FakeClock()
    app = App("memory://", clock=clock, retry=RetryPolicy(max_retries=1, base_delay=1, jitter=0))
    once: set[str] = set()

    @app.task("ok", queue="q")
    async def ok(ctx: JobContext) -> str:
        ctx.add_cost(usd=0.01)
        return "fine"

    @app.task("flaky", queue="q")
    async def flaky(ctx: JobContext) -> str:
        ctx.add_cost(usd=0.01)
        if ctx.id not in once:
            once.add(ctx.id)
            raise TaskError("503 from the provider", kind=ErrorKind.SERVER)
        return "fine"

    @app.task("sleepy", queue="q")
    async def sleepy(ctx: JobContext) -> str:
        if ctx.id not in once:
            once.add(ctx.id)
            raise Snooze(1)
        return "fine"

    @app.task("bad", queue="q")
    async def bad(ctx: JobContext) -> None:
        raise TaskError("prompt too long", kind=ErrorKind.VALIDATION)

    @app.task("down", queue="q")
    async def down(ctx: JobContext) -> None:
        raise TaskError("connection refused", kind=ErrorKind.NETWORK)

    metrics = Metrics(app, sources=[provider_readings])
    metrics.install()
    async with app:
        for task in ("ok", "flaky", "sleepy", "bad", "down"):
            await app.enqueue(task, {})
        later = await app.enqueue("ok", {}, delay=3600)
        await app.cancel(later.id)
        await run_until_idle(app)
        clock.advance(5)  # the retry and the snoozed job are due
        await run_until_idle(app)
        dead = (await app.dlq.list()).items
        await app.dlq.redrive(dead[0].job_id)
        guard = ProviderGuard(app, "pixellab:abc123")
        await guard.admit("job-1")
        await guard.record_failure("job-1", "auth", immediate=True)
        for outcome in ("200", "503", "429", "timeout", "error"):
            app.events.emit(
                EventName.PROVIDER_REQUEST,
                provider="pixellab:abc123",
                request="submit",
                operation="generate-image-v2",
                outcome=outcome,
                seconds=0.2,
            )
        await metrics.refresh()
        families = {f.name for f in metrics.registry.collect()}
        return metrics.render().decode(), families


@pytest.fixture(scope="module")
def exported() -> Exported:
    text, registered = asyncio.run(scripted_scrape())
    out: Exported = {}
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sampled.add(family.name)
            labels = out.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    # A family without a sample would hide its names from the checks below.
    assert registered <= sampled, f"no sample for {sorted(registered - sampled)}"
    return out


# -- what the ops files use -----------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_labels() -> dict[str, set[str]]:
    """Each recording rule's series and its labels: those of its first ``by`` clause."""
    out: dict[str, set[str]] = {}
    for rule in rules():
        if "record" in rule:
            by = [labels for clause, labels in read(rule["expr"]).groupings if clause == "by"]
            assert by, f"{rule['record']}: aggregate with 'by (...)' to name its labels"
            out[rule["record"]] = set(by[0]) - {"le"}
    return out


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def label_values_queries() -> list[tuple[str, str, str]]:
    """(variable, series selector, label) of each ``label_values`` template variable."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            assert m, f"variable {var['name']}: expected label_values(series, label)"
            out.append((var["name"], m.group(1), m.group(2)))
    return out


def every_expr() -> list[tuple[str, str]]:
    from_rules = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()]
    variables = [(f"variable {name}", series) for name, series, _ in label_values_queries()]
    return from_rules + dashboard_exprs() + variables


def problems(query: Query, exported: Exported, recorded: dict[str, set[str]]) -> list[str]:
    found: list[str] = []
    label_sets: list[set[str]] = []
    for sel in query.selectors:
        if sel.name in recorded:
            labels, seen = recorded[sel.name], None
        elif sel.name in exported:
            seen = exported[sel.name]
            labels = set(seen)
        else:
            found.append(f"{sel.name} is not exported (nor recorded by the rules)")
            continue
        label_sets.append(labels)
        for m in sel.matchers:
            if m.label not in labels:
                found.append(f"{sel.name} has no label {m.label!r}")
            elif seen is not None and m.op in ("=", "=~") and "$" not in m.value:
                pattern = m.value if m.op == "=~" else re.escape(m.value)
                if not any(re.fullmatch(pattern, v) for v in seen[m.label]):
                    found.append(f"{sel.name}{{{m.label}{m.op}{m.value!r}}} matches no value")
    for clause, names in query.groupings:
        for name in names - TARGET_LABELS:
            if any(name not in labels for labels in label_sets):
                found.append(f"{clause} ({name}): not a label of every series used")
    return found


# -- the checks -----------------------------------------------------------------------


def test_the_exported_set_is_what_the_checks_expect(exported: Exported) -> None:
    # The checks below are only as good as this set: spot-check it against the README.
    assert exported["genqueue_jobs_failed_total"]["error_kind"] >= {"server", "validation"}
    assert exported["genqueue_queue_jobs"]["state"] >= {"queued", "dead"}
    assert "le" in exported["genqueue_job_duration_seconds_bucket"]
    assert "genqueue_job_duration_seconds" not in exported  # only its _bucket/_sum/_count
    assert "genqueue_jobs_succeeded" not in exported  # counters end in _total
    assert exported["genqueue_provider_circuit_state"]["state"] == {"closed", "half_open", "open"}


def test_every_name_and_label_the_ops_files_use_is_exported(exported: Exported) -> None:
    recorded = recorded_labels()
    found = [
        f"{where}: {problem}"
        for where, expr in every_expr()
        for problem in problems(read(expr), exported, recorded)
    ]
    assert found == []
    for name, series, label in label_values_queries():
        (selector,) = read(series).selectors
        assert label in exported[selector.name], f"variable {name}: no label {label}"


def test_the_name_check_catches_what_is_not_exported(exported: Exported) -> None:
    recorded = recorded_labels()

    def check(expr: str) -> list[str]:
        return problems(read(expr), exported, recorded)

    assert check("sum(rate(genqueue_jobs_succeeded_total[5m]))") == []
    assert check("rate(genqueue_jobs_succeeded[5m])") != []  # no _total
    assert check("genqueue_job_duration_seconds") != []  # a histogram is its series
    assert check('genqueue_queue_jobs{state="deadletter"}') != []  # no such state
    assert check('genqueue_queue_jobs{status="dead"}') != []  # no such label
    assert check("sum by (task) (genqueue_queue_jobs)") != []  # gauges have no task
    assert check("max by (queue) (queue_task:genqueue_jobs_failed:rate5m)") == []
    assert check("max by (provider) (queue_task:genqueue_jobs_failed:rate5m)") != []
    assert check("queue:genqueue_nothing:rate5m") != []


def test_the_rules_are_well_formed() -> None:
    doc = yaml.safe_load(RULES.read_text())
    names = [group["name"] for group in doc["groups"]]
    assert len(names) == len(set(names))
    alerts = [rule for rule in rules() if "alert" in rule]
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert "`genqueue " in alert["annotations"]["description"], alert["alert"]
    # The alerts issue 10 asks for, where metrics allow.
    assert {a["alert"] for a in alerts} >= {
        "GenqueueDeadLetterQueueLarge",
        "GenqueueDeadLetterQueueGrowing",
        "GenqueueHighRetryRate",
        "GenqueueProviderCircuitOpen",
        "GenqueueBacklogOld",
        "GenqueueNoWorkers",
        "GenqueueWastedSpendHigh",
        "GenqueueProviderErrors",
        "GenqueueMetricsStale",
    }


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert {"queue", "task"} <= set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])


def cli_commands(text: str) -> list[str]:
    """Every `genqueue ...` command quoted in backticks, Prometheus templates made values."""
    text = re.sub(r"\{\{[^}]*\}\}", "X", text)
    return re.findall(r"`(genqueue [^`]+)`", text)


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def test_the_readme_lists_every_alert() -> None:
    text = section(README.read_text(), "Running in production")
    missing = [r["alert"] for r in rules() if "alert" in r and f"`{r['alert']}`" not in text]
    assert missing == []


def test_every_command_the_alerts_and_the_readme_name_exists() -> None:
    texts = [a["annotations"]["description"] for a in rules() if "alert" in a]
    texts.append(section(README.read_text(), "Running in production"))
    commands = {c for text in texts for c in cli_commands(text)}
    assert len(commands) > 10
    runner = CliRunner()
    for command in sorted(commands):
        words = shlex.split(command)[1:]
        path = list(takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words))
        result = runner.invoke(cli, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, f"{command}: {result.output}"
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in result.output, f"{command}: no option {option}"


# -- promtool -------------------------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing; .ci/run installs it")
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    return found


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def test_promtool_accepts_the_rules() -> None:
    result = run(promtool(), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_and_stays_quiet_where_it_should() -> None:
    result = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname[=:]\s*\"?(\w+)", RULE_TESTS.read_text()))
    assert tested >= {r["alert"] for r in rules() if "alert" in r}


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # promtool checks rule files, so each panel query becomes a recording rule.
    exprs = [expr for _, expr in dashboard_exprs()]
    for _, series, label in label_values_queries():
        exprs.append(f"count by ({label}) ({series})")
    group = {"name": "dashboard", "rules": []}
    for n, expr in enumerate(exprs):
        group["rules"].append({"record": f"dashboard:query_{n}", "expr": concrete(expr)})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = run(promtool(), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
