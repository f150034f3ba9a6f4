"""Jobs and dead letter entries to and from SQLite rows.

A row that cannot be decoded (corrupted JSON written by someone else) still becomes a
``Job``: its raw text is kept and ``data_error`` says what is wrong, so the worker can
dead-letter it and an operator can inspect it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

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
SELECT_ENTRY = ", ".join(f"d.{c}" for c in ENTRY_COLUMNS)
UPSERT_ENTRY = (
    f"INSERT OR REPLACE INTO dead_letters ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
)


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


def _load(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return orjson.loads(text)


def row_to_job(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    values = dict(zip(JOB_COLUMNS, row, strict=False))
    data_error = None
    try:
        data = _load(values["data"])
    except orjson.JSONDecodeError as exc:
        data, data_error = values["data"], f"invalid JSON ({exc})"
    try:
        extras = _decode_extras(values)
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
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


def _decode_extras(values: dict[str, Any]) -> dict[str, Any]:
    last_error = _load(values["last_error"])
    return {
        "last_error": ClassifiedError.from_dict(last_error) if last_error else None,
        "history": attempts_from_records(
            _load(values["history"], []), values["started_at"], values["finished_at"]
        ),
        "result": _load(values["result"]),
        "progress": Progress.from_record(_load(values["progress"])),
        "cost": dict(_load(values["cost"], {})),
        "meta": dict(_load(values["meta"], {})),
    }


def entry_values(entry: DeadLetter) -> tuple[Any, ...]:
    record = entry.index_record()
    return tuple(record[c] for c in ENTRY_COLUMNS)


def row_to_entry(row: sqlite3.Row | tuple[Any, ...]) -> DeadLetter:
    """Decode a row of ``SELECT_ENTRY, SELECT_JOB``."""
    index = dict(zip(ENTRY_COLUMNS, row[: len(ENTRY_COLUMNS)], strict=True))
    return DeadLetter.from_records(index, row_to_job(row[len(ENTRY_COLUMNS) :]))
