"""Jobs and dead letter entries to and from what the Redis scripts store.

A job is stored as its whole record (JSON body) plus a small "hot" record holding the
fields that fetch, heartbeat and promote change without rewriting the body (state,
attempts, lease, started/updated times, owner), plus running updates (progress, and
patches with remote id, meta and cost) written while it runs. ``decode_job`` overlays
them on the body. A body that is not valid JSON still becomes a ``Job`` (with
``data_error`` set), so the worker dead-letters it instead of crashing on it.

A dead job's body is stored compact (``deadbody``: stacks apart, the rest compressed)
and its entry as version 2 JSON; the move script keeps the two, with what is left of its
hot record, in one field of the DLQ hash, and ``read_jobs`` hands them back apart (see
``lua/lib/prelude.lua``). The formats stored before are read too.
"""

from __future__ import annotations

from typing import Any

import orjson

from genqueue.backends import deadbody
from genqueue.backends.base import Move, RunningUpdate, gone_at_finish
from genqueue.backends.redis.keys import created_member
from genqueue.backends.redis.scripts import Stored
from genqueue.entry import DeadLetter
from genqueue.job import EXPIRING_STATES, Job, JobState
from genqueue.serialization import data_digest


def num(value: float | None) -> str:
    """A float as the exact text Redis and Lua read back to the same double."""
    return "" if value is None else repr(float(value))


def _opt_float(text: str) -> float | None:
    return float(text) if text else None


#: Record fields the body leaves out: the hash field (id) and the key (queue) say them,
#: and the hot record holds the others (``decode_job`` puts them back).
_NOT_IN_BODY = ("id", "queue", "state", "attempts", "lease_owner", "lease_expires_at", "updated_at")


def body_record(job: Job) -> dict[str, Any]:
    """The record of the stored body: the job's compact record without what is stored
    elsewhere."""
    record = job.to_record()
    for name in _NOT_IN_BODY:
        record.pop(name, None)
    return record


def body(job: Job) -> bytes:
    return orjson.dumps(body_record(job))


def enqueue_args(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.state.value,
        num(job.run_at),
        job.idempotency_key or "",
        body(job),
        created_member(job.created_at, job.id),
        num(job.updated_at),
        job.attempts,
        _digest(job),
    )


def _digest(job: Job) -> str:
    """The data digest an idempotency key is held with ('' when the job has no key)."""
    return data_digest(job.data) if job.idempotency_key else ""


def move_args(move: Move) -> tuple[str | bytes, ...]:
    """The 17 values of one move (see ``lua/move.lua``): strings, except a dead job's
    compact body, bytes (``scripts.move`` sends those as arguments of their own). A
    finished job is indexed by its expiry; one that expires as it finishes is sent
    without a body: the script deletes it."""
    job = move.job
    if job.state is JobState.DEAD and move.entry is None:
        raise ValueError("a move to DEAD needs its entry")
    record = body_record(job)
    body: str | bytes = "" if gone_at_finish(job) else orjson.dumps(record).decode()
    entry, stacks = "", ""
    if job.state is JobState.DEAD and move.entry:
        found = deadbody.split_stacks(record)
        body = deadbody.pack(record)
        entry = encode_entry(move.entry, sorted(found)).decode()
        stacks = orjson.dumps(sorted(found.items())).decode() if found else ""
    return (
        job.id,
        move.expect_state.value,
        str(move.expect_token),
        "1" if move.require_expired_lease else "",
        job.state.value,
        str(job.attempts),
        num(job.lease_expires_at),
        num(job.started_at),
        num(job.updated_at),
        job.lease_owner or "",
        num(job.run_at),
        num(job.expires_at) if job.state in EXPIRING_STATES else "",
        job.idempotency_key or "",
        body,
        entry,
        _digest(job),
        stacks,
    )


def encode_entry(entry: DeadLetter, stacks: list[str]) -> bytes:
    """The stored entry (version 2): what it is filtered and counted on, its expiry, the
    keys of its job's stacks and its cost. Lua builds its index members (with the
    failed_at's ``time_key``, which entries stored before held as ``tk``)."""
    cost = [[unit, num(amount)] for unit, amount in sorted(entry.job.cost.items())]
    return orjson.dumps(
        {
            "v": 2,
            "u": entry.user_id,
            "t": entry.task,
            "k": entry.error_kind.value,
            "f": entry.fingerprint,
            "r": entry.reason,
            "a": num(entry.failed_at),
            "x": num(entry.expires_at),
            "s": stacks,
            "c": cost,
        }
    )


def running_patch(update: RunningUpdate) -> bytes:
    """The JSON line update_running appends (b'' when there is nothing but progress)."""
    patch: dict[str, Any] = {}
    if update.remote_job_id is not None:
        patch["remote_job_id"] = update.remote_job_id
    if update.meta:
        patch["meta"] = update.meta
    if update.cost:
        patch["cost"] = update.cost
    return orjson.dumps(patch) if patch else b""


def parse_hot(raw: bytes) -> list[str]:
    """[state, attempts, lease, started, updated, seqm, cm, owner]."""
    return raw.decode().split("|", 7)


def decode_job(job_id: str, queue: str, stored: Stored) -> Job:
    state, attempts, lease, started, updated, _, _, owner = parse_hot(stored.hot)
    try:
        record = deadbody.unpack(stored.body)
        if not isinstance(record, dict):
            raise TypeError("the job record is not an object")
    except (ValueError, TypeError) as exc:
        return _undecodable(
            job_id, queue, stored.body, state=state, attempts=int(attempts), error=str(exc)
        )
    record["id"], record["queue"] = job_id, queue
    record["state"] = state
    record["attempts"] = int(attempts)
    record["lease_expires_at"] = _opt_float(lease)
    # A finished job's hot record has no start time: its body has it.
    record["started_at"] = _opt_float(started) if started else record.get("started_at")
    record["updated_at"] = _opt_float(updated) or record.get("updated_at")
    record["lease_owner"] = owner or None
    deadbody.join_stacks(record, stored.stacks or {})
    if stored.prog:
        record["progress"] = orjson.loads(stored.prog)
    if stored.patch:
        for line in stored.patch.split(b"\n"):
            _apply_patch(record, orjson.loads(line))
    return Job.from_record(record)


def _apply_patch(record: dict[str, Any], patch: dict[str, Any]) -> None:
    if "remote_job_id" in patch:
        record["remote_job_id"] = patch["remote_job_id"]
    if "meta" in patch:
        record["meta"] = {**(record.get("meta") or {}), **patch["meta"]}
    if "cost" in patch:
        record["cost"] = dict(patch["cost"])


def _undecodable(
    job_id: str, queue: str, raw: bytes, *, state: str, attempts: int, error: str
) -> Job:
    return Job(
        id=job_id,
        task="(undecodable)",
        queue=queue,
        created_at=0.0,
        run_at=0.0,
        state=JobState(state),
        attempts=attempts,
        data=raw.decode(errors="replace"),
        data_error=f"invalid job record ({error})",
    )


def fetched_job(
    job_id: str, body: bytes, attempts: int, *, queue: str, owner: str, now: float, lease: float
) -> Job:
    """A job the fetch script just claimed, from its body and the claim's values."""
    try:
        record = orjson.loads(body)
        if not isinstance(record, dict):
            raise TypeError("the job record is not an object")
    except (orjson.JSONDecodeError, TypeError) as exc:
        job = _undecodable(
            job_id, queue, body, state=JobState.ACTIVE.value, attempts=attempts, error=str(exc)
        )
    else:
        record["id"], record["queue"] = job_id, queue
        record["state"] = JobState.ACTIVE.value
        record["attempts"] = attempts
        record["lease_owner"] = owner
        record["lease_expires_at"] = now + lease
        record["started_at"] = now
        record["updated_at"] = now
        return Job.from_record(record)
    job.lease_owner, job.lease_expires_at, job.started_at, job.updated_at = (
        owner,
        now + lease,
        now,
        now,
    )
    return job


def decode_entry(
    job_id: str, queue: str, stored: Stored, job: Job | None = None
) -> DeadLetter | None:
    """The entry of a stored job (``job``: the job, if decoded already)."""
    if stored.entry is None:
        return None
    record = entry_record(stored.entry, job_id, queue)
    return DeadLetter.from_records(record, job or decode_job(job_id, queue, stored))


def entry_record(raw: bytes, job_id: str, queue: str) -> dict[str, Any]:
    """An entry's ``DeadLetter.index_record()`` from its stored form (either version)."""
    stored = orjson.loads(raw)
    if stored.get("v") != 2:
        record: dict[str, Any] = stored["r"]
        return record
    return {
        "job_id": job_id,
        "queue": queue,
        "user_id": stored["u"],
        "task": stored["t"],
        "reason": stored["r"],
        "error_kind": stored["k"],
        "failed_at": float(stored["a"]),
        "fingerprint": stored["f"],
        "expires_at": float(stored["x"]),
    }
