"""Every error the HTTP API answers is JSON: ``{"error": message, "field": name or null}``.

genqueue's own exceptions map to status codes here (bad input 400, not found 404, state
conflicts 409, storage down 503); FastAPI's request validation errors are reshaped to
name the one field at fault, so a client never has to parse pydantic's error list.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from genqueue.errors import (
    BackendError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    StateError,
)


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: str
    field: str | None = None


#: Documented on every API route, so the OpenAPI schema lists each answer it can give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Bad input; `field` names the one at fault. Nothing was stored."),
        (401, "No token, or an unknown one."),
        (403, "The token may not do this."),
        (404, "Not found (or not yours)."),
        (409, "Not allowed in the current state."),
        (413, "The body is larger than the limit."),
        (422, "The request does not match its schema; `field` names the one at fault."),
        (503, "The storage is unreachable."),
    )
}


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "delay") -> "delay"; ("body",) -> "body"; ("body", "ids", 3) -> "ids[3]";
    # a query, path or header parameter is named as sent: ("query", "state", 0) -> "state"
    if len(loc) > 1 and loc[0] in ("query", "path", "header"):
        return str(loc[1])
    parts = list(loc[1:]) if len(loc) > 1 and loc[0] == "body" else list(loc)
    if not parts:
        return str(loc[0]) if loc else "body"
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid request")
    first = errors[0]
    # Malformed JSON is located by character offset; the field at fault is the body.
    loc = ("body",) if first.get("type") == "json_invalid" else tuple(first.get("loc", ()))
    field = _field_of(loc)
    return error_response(422, f"{field}: {first.get('msg', 'invalid')}", field)


async def _genqueue(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, IdempotencyConflict):
        return error_response(409, str(exc), exc.field)
    if isinstance(exc, InvalidInput):
        return error_response(400, str(exc), exc.field)
    if isinstance(exc, NotFound):
        return error_response(404, str(exc))
    if isinstance(exc, StateError):
        return error_response(409, str(exc))
    return error_response(503, f"storage unavailable: {exc}")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    field = getattr(exc, "field", None)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, detail, field, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for kind in (InvalidInput, NotFound, StateError, BackendError):
        app.add_exception_handler(kind, _genqueue)
