"""The command line starts fast: heavy modules load only in the commands that use them.

Timing lives in ``bench/cli_startup.py``; this checks the cause (what gets imported), in
a fresh interpreter, so it holds on a slow or busy machine too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "genqueue.providers.fake_pixellab",  # the fake server (and through it, pydantic)
    "pydantic",
    "fastapi",
    "httpx",
    "genqueue.worker",
)


def imported_after(code: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, check=True, cwd=cwd, env=env, timeout=60,
    )  # fmt: skip
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_importing_the_cli_loads_nothing_heavy(tmp_path: Path) -> None:
    modules = imported_after("import genqueue.cli.main", tmp_path)
    assert [name for name in HEAVY if loaded(modules, name)] == []
    assert not loaded(modules, "genqueue.app")  # not even the core, for --help


@pytest.mark.parametrize("args", [["--help"], ["dlq", "list"], ["jobs", "list"]])
def test_read_commands_load_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    env = {"GENQUEUE_BACKEND": f"sqlite:///{tmp_path / 'x.db'}", "PATH": "/usr/bin:/bin"}
    code = f"from genqueue.cli.main import run\nrun({args!r})"
    modules = imported_after(code, tmp_path, env)
    assert [name for name in HEAVY if loaded(modules, name)] == []


def test_public_names_still_import(tmp_path: Path) -> None:
    import genqueue

    assert all(getattr(genqueue, name) is not None for name in genqueue.__all__)
    assert "Worker" in dir(genqueue)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = genqueue.Nope  # type: ignore[attr-defined]
