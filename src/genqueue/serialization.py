"""JSON in and out, and the checks job data must pass before anything is stored.

genqueue stores and sends JSON only (never pickle). ``dumps``/``loads`` are the one
codec; ``check_json`` validates user data so that bad input fails at enqueue, with a
message naming the field, and not later inside a worker.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from genqueue.errors import InvalidInput

MAX_DATA_BYTES = 1024 * 1024
MAX_DEPTH = 64
_MAX_INT = 2**63 - 1
_SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "authorization",
        "password",
        "secret",
        "client_secret",
        "access_token",
        "api_token",
        "bearer",
    }
)


def dumps(value: Any) -> bytes:
    """Encode as compact JSON bytes."""
    return orjson.dumps(value)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def data_digest(value: Any) -> str:
    """A short hash of a JSON value that ignores key order: equal data, equal digest.

    Idempotency uses it to tell a re-sent enqueue (same data) from a conflicting one.
    """
    canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def iso(ts: float | None) -> str | None:
    """An epoch instant as ISO 8601 in UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: str) -> float:
    """Parse an ISO 8601 date/time (UTC if no zone) or epoch seconds into epoch seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"invalid time {text!r}: use ISO 8601 (2026-11-28T12:00:00Z) or epoch seconds"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def check_json(
    value: Any,
    *,
    field: str = "data",
    max_bytes: int = MAX_DATA_BYTES,
    refuse_secrets: bool = True,
) -> bytes:
    """Validate that ``value`` is plain, finite, bounded JSON (without secrets, unless
    ``refuse_secrets`` is false); return it encoded.

    Strict: NaN, Infinity and objects that are not JSON types (dataclasses, datetimes...)
    are refused, where the encoder would write ``null`` or a string for them. Raises
    ``InvalidInput`` naming the offending path.
    """
    _walk(value, field, 0, refuse_secrets)
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidInput(f"{field} is not JSON: {exc}", field=field) from exc
    if len(encoded) > max_bytes:
        raise InvalidInput(
            f"{field} is {len(encoded)} bytes; the limit is {max_bytes} bytes "
            "(store large inputs elsewhere and pass a reference)",
            field=field,
        )
    return encoded


def _walk(value: Any, path: str, depth: int, secrets: bool) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{path} is nested deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, dict):
        _walk_object(value, path, depth, secrets)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1, secrets)
    else:
        _check_scalar(value, path)


def _walk_object(value: dict[Any, Any], path: str, depth: int, secrets: bool) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidInput(f"{path} has a non-string key {key!r}", field=path)
        if secrets and key.lower() in _SECRET_KEYS:
            raise InvalidInput(
                f"{path}.{key} looks like a secret; job data is stored and shown to "
                "operators, so pass credentials through the worker's environment instead",
                field=f"{path}.{key}",
            )
        _walk(item, f"{path}.{key}", depth + 1, secrets)


def _check_scalar(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise InvalidInput(f"{path} is an integer outside 64 bits", field=path)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is {value}; JSON has no NaN or Infinity", field=path)
        return
    raise InvalidInput(
        f"{path} is a {type(value).__name__}, which is not JSON "
        "(use objects, arrays, strings, numbers, booleans and null)",
        field=path,
    )


def parse_json_text(text: str, *, field: str = "data") -> Any:
    """Parse JSON given as text by a user (CLI, API)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{field} is not valid JSON: {exc}", field=field) from exc
