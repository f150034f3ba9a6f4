"""Jobs and dead letter entries to and from SQLite rows.

A row that cannot be decoded (corrupted JSON written by someone else) still becomes a
``Job``: its raw text is kept and ``data_error`` says what is wrong, so the worker can
dead-letter it and an operator can inspect it.

A dead job's row is compact (``dead_job_values``): its stacks are kept once in
``dlq_stacks`` and referred to by key, and its history is packed (``deadbody``); its last
error stays JSON (text search reads its message). ``row_to_job`` reads both forms, given
a ``Stacks`` lookup for the keys it finds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from genqueue.backends import deadbody
from genqueue.backends.base import Move
from genqueue.classify import ClassifiedError
from genqueue.entry import DeadLetter
from genqueue.job import Job, JobState, Progress, attempts_from_records

JOB_COLUMNS = (
    "id",
    "queue",
    "task",
    "state",
    "data",
    "user_id",
    "idempotency_key",
    "created_at",
    "updated_at",
    "run_at",
    "attempts",
    "retry_count",
    "max_retries",
    "redrive_count",
    "timeout",
    "lease_owner",
    "lease_expires_at",
    "started_at",
    "finished_at",
    "last_error",
    "history",
    "remote_job_id",
    "result",
    "progress",
    "cost",
    "meta",
    "expires_at",
)
SELECT_JOB = ", ".join(f"j.{c}" for c in JOB_COLUMNS)
INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' for _ in JOB_COLUMNS)})"
)
# Every column but id, written by a fenced move.
UPDATE_JOB = "UPDATE jobs SET " + ", ".join(f"{c} = ?" for c in JOB_COLUMNS[1:])

ENTRY_COLUMNS = (
    "job_id",
    "queue",
    "user_id",
    "task",
    "reason",
    "error_kind",
    "fingerprint",
    "failed_at",
    "expires_at",
)
#: Looks up stacks by key (the backend's connection; missing keys are left out).
Stacks = Callable[[set[str]], Mapping[str, str]]
SELECT_ENTRY = ", ".join(f"d.{c}" for c in ENTRY_COLUMNS)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def job_values(job: Job) -> tuple[Any, ...]:
    """Column values in ``JOB_COLUMNS`` order."""
    # Undecodable data is written back as the raw text it was read as.
    data = _json(job.data) if job.data_error is None else job.data
    return (
        job.id,
        job.queue,
        job.task,
        job.state.value,
        data,
        job.user_id,
        job.idempotency_key,
        job.created_at,
        job.updated_at,
        job.run_at,
        job.attempts,
        job.retry_count,
        job.max_retries,
        job.redrive_count,
        job.timeout,
        job.lease_owner,
        job.lease_expires_at,
        job.started_at,
        job.finished_at,
        _json_or_none(job.last_error.to_dict() if job.last_error else None),
        _json(job.history_records()),
        job.remote_job_id,
        _json_or_none(job.result),
        _json_or_none(job.progress.to_record() if job.progress else None),
        _json(job.cost),
        _json(job.meta),
        job.expires_at,
    )


def dead_job_values(job: Job) -> tuple[tuple[Any, ...], dict[str, str]]:
    """A dead job's column values, compact, and the stacks they refer to by key."""
    parts: dict[str, Any] = {
        "last_error": job.last_error.to_dict() if job.last_error else None,
        "history": [a.to_record() for a in job.history],
    }
    stacks = deadbody.split_stacks(parts)
    values = list(job_values(job))
    last, history = parts["last_error"], parts["history"]
    if last is not None and history and history[-1].get("error") == last:
        # The error it died of is its last attempt's: kept once, with the message that
        # text search reads.
        last = {"message": last.get("message"), _SAME_AS: "history"}
    values[JOB_COLUMNS.index("last_error")] = _json_or_none(last)
    values[JOB_COLUMNS.index("history")] = deadbody.pack(parts["history"])
    return tuple(values), stacks


#: Marks a dead job's last error stored as "the error of its last attempt".
_SAME_AS = "$same_as"
#: A move's job column values, entry values (to DEAD) and the stacks they refer to.
MoveValues = tuple[Move, tuple[Any, ...], tuple[Any, ...] | None, dict[str, str]]


def move_values(move: Move) -> MoveValues:
    """What a move writes: compact values for a dead job (``dead_job_values``)."""
    if move.job.state is JobState.DEAD and move.entry is not None:
        values, stacks = dead_job_values(move.job)
        return move, values, entry_values(move.entry), stacks
    return move, job_values(move.job), entry_values(move.entry) if move.entry else None, {}


def _load(text: str | bytes | None, default: Any = None) -> Any:
    if text is None:
        return default
    if isinstance(text, bytes):
        return deadbody.unpack(text)
    return orjson.loads(text)


def row_to_job(row: sqlite3.Row | tuple[Any, ...], stacks: Stacks | None = None) -> Job:
    values = dict(zip(JOB_COLUMNS, row, strict=False))
    data_error = None
    try:
        data = _load(values["data"])
    except orjson.JSONDecodeError as exc:
        data, data_error = values["data"], f"invalid JSON ({exc})"
    try:
        extras = _decode_extras(values, stacks)
    except (TypeError, ValueError, KeyError) as exc:
        extras, data_error = {}, data_error or f"invalid job record ({exc})"
    return Job(
        id=values["id"],
        queue=values["queue"],
        task=values["task"],
        state=JobState(values["state"]),
        data=data,
        user_id=values["user_id"],
        idempotency_key=values["idempotency_key"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        run_at=values["run_at"],
        attempts=values["attempts"],
        retry_count=values["retry_count"],
        max_retries=values["max_retries"],
        redrive_count=values["redrive_count"],
        timeout=values["timeout"],
        lease_owner=values["lease_owner"],
        lease_expires_at=values["lease_expires_at"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        expires_at=values["expires_at"],
        remote_job_id=values["remote_job_id"],
        data_error=data_error,
        **extras,
    )


def _decode_extras(values: dict[str, Any], stacks: Stacks | None) -> dict[str, Any]:
    parts = {"last_error": _load(values["last_error"]), "history": _load(values["history"], [])}
    last = parts["last_error"]
    if isinstance(last, dict) and last.get(_SAME_AS) == "history" and parts["history"]:
        parts["last_error"] = parts["history"][-1].get("error")
    refs = deadbody.stack_refs(parts)
    if refs:
        deadbody.join_stacks(parts, stacks(refs) if stacks is not None else {})
    last_error = parts["last_error"]
    return {
        "last_error": ClassifiedError.from_dict(last_error) if last_error else None,
        "history": attempts_from_records(
            parts["history"], values["started_at"], values["finished_at"]
        ),
        "result": _load(values["result"]),
        "progress": Progress.from_record(_load(values["progress"])),
        "cost": dict(_load(values["cost"], {})),
        "meta": dict(_load(values["meta"], {})),
    }


def entry_values(entry: DeadLetter) -> tuple[Any, ...]:
    record = entry.index_record()
    return tuple(record[c] for c in ENTRY_COLUMNS)


def row_to_entry(row: sqlite3.Row | tuple[Any, ...], stacks: Stacks | None = None) -> DeadLetter:
    """Decode a row of ``SELECT_ENTRY, SELECT_JOB``."""
    index = dict(zip(ENTRY_COLUMNS, row[: len(ENTRY_COLUMNS)], strict=True))
    return DeadLetter.from_records(index, row_to_job(row[len(ENTRY_COLUMNS) :], stacks))


def stacks_of(conn: sqlite3.Connection) -> Stacks:
    """Looks up dead jobs' stacks by key through ``conn`` (in the backend's thread). Make
    one per read: it remembers what it found, and the jobs of a page share a few stacks."""
    found: dict[str, str] = {}

    def lookup(keys: set[str]) -> dict[str, str]:
        missing = sorted(keys - found.keys())
        if missing:
            marks = ", ".join("?" for _ in missing)
            sql = f"SELECT key, stack FROM dlq_stacks WHERE key IN ({marks})"
            found.update(conn.execute(sql, missing).fetchall())
        return {key: found[key] for key in keys if key in found}

    return lookup
