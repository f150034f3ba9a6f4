"""Typed task data: a task that declares a pydantic model for its data.

A task written as ``async def generate(ctx: JobContext[GenerateRequest])`` (with
``GenerateRequest`` a pydantic ``BaseModel``) declares its data's shape. This module
finds that model when the task is registered, validates data against it at enqueue
(bad data is ``InvalidInput`` naming the field; nothing is stored) and turns stored data
back into the model for the task. Stored data stays plain JSON
(``model_dump(mode="json")``).

pydantic is never imported here: a model can only exist once its author imported
pydantic, so a task is typed exactly when ``sys.modules`` already holds it. Untyped
tasks (``ctx: JobContext``, or no annotation) never touch this path.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any

from genqueue.context import JobContext
from genqueue.errors import ConfigError, InvalidInput


def data_model_of(fn: Callable[..., Any]) -> type[Any] | None:
    """The pydantic model in ``fn``'s ``JobContext[Model]`` annotation, if it has one."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params or params[0].annotation is inspect.Parameter.empty:
        return None
    annotation = params[0].annotation
    if isinstance(annotation, str):
        if "[" not in annotation:
            return None  # a bare name (``JobContext``): untyped, nothing to resolve
        annotation = _resolve(fn, params[0].name, annotation)
    if typing.get_origin(annotation) is not JobContext:
        return None
    (model,) = typing.get_args(annotation)
    return model if _is_model(model) else None


def _resolve(fn: Callable[..., Any], name: str, text: str) -> Any:
    """A string annotation (``from __future__ import annotations``) as the object it names."""
    try:
        return typing.get_type_hints(fn)[name]
    except Exception as exc:
        if "JobContext[" not in text:
            return None  # not a typed context; whatever it is, the task is untyped
        raise ConfigError(
            f"cannot resolve the data type {text!r} of task function "
            f"{getattr(fn, '__qualname__', fn)!r}: {exc} (define the model at module level)"
        ) from exc


def _is_model(candidate: object) -> bool:
    pydantic = sys.modules.get("pydantic")
    return (
        pydantic is not None
        and isinstance(candidate, type)
        and issubclass(candidate, pydantic.BaseModel)
    )


def validate_data(model: type[Any], data: Any) -> Any:
    """``data`` (a dict or a model instance) validated by ``model``, as plain JSON to store."""
    return parse_data(model, data, what="data").model_dump(mode="json")


def parse_data(model: type[Any], data: Any, *, what: str = "job data") -> Any:
    """``data`` as an instance of ``model``; ``InvalidInput`` naming the first bad field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = _path(first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(
            f"{what} does not match {model.__name__}: {field}: {first['msg']}{more}",
            field=field,
        ) from None


def _path(loc: tuple[int | str, ...]) -> str:
    path = "data"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
