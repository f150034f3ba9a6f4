"""Ids in the CLI: unique prefixes are accepted wherever an id is taken, as in git."""

from __future__ import annotations

import asyncio
import json

import pytest

from genqueue import App
from genqueue.cli.ids import short_ids
from genqueue.job import Job, new_job_id
from tests.cli.conftest import Runner, as_json


def test_a_prefix_names_a_job_everywhere(cli: Runner, fresh_db: str) -> None:
    job = as_json(cli("enqueue", "demo.generate", "--data", '{"scenario": "bad_key"}', "--json"))
    assert isinstance(job, dict)
    job_id = job["id"]
    shown = as_json(cli("job", "show", job_id[:6], "--json"))
    assert isinstance(shown, dict) and shown["id"] == job_id
    code, _out, _ = cli("worker", "--burst", "--log-level", "error")
    assert code == 0
    entry = as_json(cli("dlq", "show", job_id[:5].upper(), "--json"))  # case does not matter
    assert isinstance(entry, dict) and entry["job_id"] == job_id
    redriven = as_json(cli("dlq", "retry", job_id[:8], "--json"))
    assert isinstance(redriven, dict) and redriven["redriven_ids"] == [job_id]
    cancelled = as_json(cli("job", "cancel", job_id[:8], "--json"))
    assert isinstance(cancelled, dict) and cancelled["state"] == "cancelled"


def test_dlq_delete_takes_prefixes(cli: Runner, fresh_db: str) -> None:
    job = as_json(cli("enqueue", "demo.generate", "--data", '{"scenario": "bad_key"}', "--json"))
    assert isinstance(job, dict)
    assert cli("worker", "--burst", "--log-level", "error")[0] == 0
    deleted = as_json(cli("dlq", "delete", job["id"][:7], "--json"))
    assert deleted == {"deleted": [job["id"]], "not_found": []}
    code, _out, err = cli("dlq", "delete", job["id"][:7])
    assert code == 3 and f"not found: {job['id'][:7]}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "show", "abc"], "job id prefix 'abc' is too short: give at least 4 characters"),
        (["dlq", "show", "ab"], "too short"),
        (["job", "cancel", "xyz!"], "or a unique prefix of at least 4"),
        (["job", "show", "0" * 33], "32 hexadecimal characters"),
        (["job", "show", "beef"], "no job with id beef"),
        (["dlq", "show", "beef"], "no dead letter entry for job beef"),
    ],
)
def test_bad_or_unknown_prefixes_are_one_line(
    cli: Runner, fresh_db: str, args: list[str], message: str
) -> None:
    code, _out, err = cli(*args)
    assert code in (1, 3) and message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_an_ambiguous_prefix_is_refused_with_the_count(cli: Runner, fresh_db: str) -> None:
    ids = ["abcd" + new_job_id()[4:] for _ in range(3)]

    async def store() -> None:
        async with App(fresh_db) as app:
            now = await app.backend.time()
            jobs = [Job(id=i, task="demo.generate", created_at=now, run_at=now) for i in ids]
            await app.backend.enqueue(jobs)

    asyncio.run(store())
    code, _, err = cli("job", "show", "abcd")
    assert code == 1 and "job id prefix 'abcd' is ambiguous: it matches 3 jobs" in err
    assert err.count("\n") == 1
    shown = as_json(cli("job", "show", ids[1][:12], "--json"))  # more characters settle it
    assert isinstance(shown, dict) and shown["id"] == ids[1]
    listed = json.loads(cli("jobs", "list", "--json")[1])
    assert {j["id"] for j in listed["items"]} == set(ids)


def test_short_ids_grow_until_the_shown_ones_differ() -> None:
    a, b = "0123456789abcdef" + "0" * 16, "0123456789abcdef" + "1" * 16
    c = "ffff" + "0" * 28
    assert short_ids([a, c]) == {a: a[:12], c: c[:12]}
    shown = short_ids([a, b, c])
    assert len(set(shown.values())) == 3 and len({len(v) for v in shown.values()}) == 1
    assert shown[a] == a[:18]
