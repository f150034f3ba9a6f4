"""A canary API key must appear nowhere: not in SQLite (+WAL), the DLQ, logs or CLI output."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.providers.conftest import KEY
from tests.providers.test_pixellab_task import (
    PIXFLUX,
    PRO,
    enqueue,
    pixellab_app,
    run_until,
    terminal,
)

from genqueue import JsonFormatter
from genqueue.cli.main import run
from genqueue.providers.fake_pixellab import FakeOptions, FakePixelLab, fail_job, status_fault


def forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode().rstrip("="), quote(secret, safe="")]


def assert_clean(text: str, where: str) -> None:
    for form in forms(KEY):
        assert form not in text, f"the canary key leaked into {where}"


async def test_canary_key_appears_nowhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    echo = f"upstream error; request had Authorization: Bearer {KEY} and api_key={KEY}"
    try:
        with FakePixelLab(FakeOptions(tokens={KEY: "main"})) as fake:
            fake.add_fault(
                "POST /v2/create-image-pixflux",
                status_fault(500, text=echo, content_type="text/plain"),
                times=1,
            )
            fake.add_fault(
                "POST /v2/create-image-bitforge",
                status_fault(422, body={"detail": [{"loc": ["body"], "msg": echo}]}),
            )
            fake.add_fault("POST /v2/generate-image-v2", fail_job(echo), times=1)
            async with pixellab_app(fake, tmp_path) as (app, _):
                ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=2)
                ids += await enqueue(app, "create-image-bitforge", PIXFLUX)
                ids += await enqueue(app, "generate-image-v2", PRO)
                await run_until(app, terminal(app, ids))
                export = io.StringIO()
                await app.dlq.export(export)
                assert await app.dlq.count() == 2  # the 422 and the failed remote job
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert_clean(export.getvalue(), "the DLQ export")
    assert_clean(log.getvalue(), "the logs")
    assert "[REDACTED]" in export.getvalue()  # the echo was there, and was masked
    for name in ("genqueue.db", "genqueue.db-wal", "genqueue.db-shm"):
        path = tmp_path / name
        if path.exists():
            assert_clean(path.read_bytes().decode("latin-1"), name)
    url = f"sqlite:///{tmp_path / 'genqueue.db'}"
    for args in (
        ["dlq", "list", "--json"],
        ["dlq", "stats", "--json"],
        ["jobs", "list", "--json"],
        ["stats", "--json"],
        *(["job", "show", job_id, "--json"] for job_id in ids),
        *(["job", "show", job_id] for job_id in ids),
    ):
        code = await asyncio.to_thread(run, [*args, "--backend", url])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert_clean(captured.out + captured.err, " ".join(args))
