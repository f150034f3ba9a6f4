"""`genqueue dlq list` shows a page of 100 entries unless --limit says otherwise."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from genqueue import App
from genqueue.cli.main import run
from tests.conformance.helpers import make_dead


def test_dlq_list_default_page_is_100(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'page.db'}"

    async def fill() -> None:
        async with App(url) as app:
            await make_dead(app, 120)

    asyncio.run(fill())
    assert run(["dlq", "list", "--backend", url, "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert len(page["items"]) == 100 and page["next_cursor"] is not None
    assert run(["dlq", "list", "--backend", url, "--json", "--cursor", page["next_cursor"]]) == 0
    rest = json.loads(capsys.readouterr().out)
    assert len(rest["items"]) == 20 and rest["next_cursor"] is None
