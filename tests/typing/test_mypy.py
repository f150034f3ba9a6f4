"""Typed task data is checked statically: mypy --strict catches a typo in a field name."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).with_name("typo_sample.py")


@pytest.mark.slow
def test_mypy_catches_a_typo_in_a_data_field(tmp_path: Path) -> None:
    from mypy import api

    typo_line = next(
        number
        for number, line in enumerate(SAMPLE.read_text().splitlines(), start=1)
        if "ctx.data.promt" in line
    )
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(SAMPLE)]
    )
    errors = [line.split(":", 1)[1] for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    assert errors == [
        f'{typo_line}: error: "GenerateRequest" has no attribute "promt"; '
        'maybe "prompt"?  [attr-defined]'
    ]
