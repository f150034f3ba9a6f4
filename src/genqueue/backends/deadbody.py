"""The compact stored form of a dead job's record: stacks kept once, the rest compressed.

A dead job is read rarely (an operator inspects, exports or redrives it) but kept for
days, and most of its bytes are stack traces that thousands of dead jobs share (one code
path, one stack). So a backend stores a dead job's record in two parts:

* each distinct stack once per queue, keyed by ``stack_key`` (a hash of its text), with a
  count of the entries that refer to it (the backend drops a stack with its last entry);
* the record with every stack replaced by ``{"ref": <key>}`` (``split_stacks``), as JSON
  compressed with raw deflate and a preset dictionary of the record's field names
  (``pack``), behind ``MARKER``.

``unpack`` reads both a packed record and plain JSON (records stored before, and every
job that is not dead); ``join_stacks`` puts the stacks back. Nothing is lost: the record
read back equals the record stored. Lua scripts never parse a job body, so they need not
know the format. Data stays JSON at rest (compressed JSON), never pickle.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

#: Starts every packed record: a JSON text never starts with a NUL byte.
MARKER = b"\x00gqz1"
_LEVEL = 6
#: The preset dictionary: the field names and constants every record repeats. Changing
#: it changes the format: a new one needs a new MARKER (and readers of both).
_ZDICT = orjson.dumps(
    {
        "kind": "server",
        "retryable": False,
        "type": "",
        "message": "",
        "stack": {"ref": ""},
        "status": None,
        "retry_after": None,
        "fingerprint": "",
        "details": {"remote_job_id": "", "cost": {"usd": 0}},
        "history": [
            {
                "number": 1,
                "started_at": 0,
                "finished_at": 0,
                "duration": 0.0,
                "worker": "",
                "outcome": "failed",
                "error": None,
                "delay": None,
            },
            {"outcome": "dead", "kinds": "rate_limited validation timeout network auth"},
        ],
        "id": "",
        "task": "",
        "queue": "default",
        "data": {"prompt": ""},
        "user_id": None,
        "idempotency_key": None,
        "state": "dead",
        "created_at": 0,
        "updated_at": 0,
        "run_at": 0,
        "attempts": 2,
        "retry_count": 1,
        "max_retries": 1,
        "redrive_count": 0,
        "timeout": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
        "remote_job_id": None,
        "result": None,
        "progress": None,
        "started_at": 0,
        "finished_at": 0,
        "cost": {},
        "meta": {},
        "data_error": None,
    }
)


def stack_key(stack: str) -> str:
    """The key a stack is stored under: 16 hex digits of its SHA-1."""
    return hashlib.sha1(stack.encode(), usedforsecurity=False).hexdigest()[:16]


def _errors(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The error dicts of a record that may hold a stack (last error, each attempt's)."""
    found = []
    if isinstance(record.get("last_error"), dict):
        found.append(record["last_error"])
    for attempt in record.get("history") or []:
        if isinstance(attempt, dict) and isinstance(attempt.get("error"), dict):
            found.append(attempt["error"])
    return found


def split_stacks(record: dict[str, Any]) -> dict[str, str]:
    """Replace each stack of ``record`` (in place) by a reference; return key -> stack."""
    stacks: dict[str, str] = {}
    for error in _errors(record):
        stack = error.get("stack")
        if isinstance(stack, str) and stack:
            key = stack_key(stack)
            stacks[key] = stack
            error["stack"] = {"ref": key}
    return stacks


def stack_refs(record: Mapping[str, Any]) -> set[str]:
    """The stack keys a record (split by ``split_stacks``) refers to."""
    refs = set()
    for error in _errors(record):
        stack = error.get("stack")
        if isinstance(stack, dict) and isinstance(stack.get("ref"), str):
            refs.add(stack["ref"])
    return refs


def join_stacks(record: dict[str, Any], stacks: Mapping[str, str]) -> None:
    """Put the stacks back (in place). A stack that is missing reads as a note, not as a
    crash: the record stays readable."""
    for error in _errors(record):
        stack = error.get("stack")
        if isinstance(stack, dict) and "ref" in stack:
            key = str(stack["ref"])
            error["stack"] = stacks.get(key, f"(stack {key} is missing)")


def pack(record: Any) -> bytes:
    """``MARKER`` + raw deflate (with the preset dictionary) of a JSON value."""
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return MARKER + compressor.compress(orjson.dumps(record)) + compressor.flush()


def is_packed(raw: bytes) -> bool:
    return raw.startswith(MARKER)


def unpack(raw: bytes) -> Any:
    """The JSON value of a packed record, or of plain JSON text. Raises ``ValueError``
    (``orjson.JSONDecodeError`` is one) if it is neither."""
    if raw.startswith(MARKER):
        try:
            decompressor = zlib.decompressobj(-15, _ZDICT)
            text = decompressor.decompress(raw[len(MARKER) :]) + decompressor.flush()
        except zlib.error as exc:
            raise ValueError(f"damaged compressed record ({exc})") from exc
        return orjson.loads(text)
    return orjson.loads(raw)
