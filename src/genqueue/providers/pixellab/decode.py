"""Turn PixelLab's image payloads into PNG bytes, and elide them from stored responses.

Images arrive as ``{"type": "base64", "base64": ..., "format": "png"}`` (sometimes with a
``data:image/png;base64,`` prefix inside), as bare base64 strings, or as
``{"type": "rgba_bytes", "width", "height", "base64"}`` raw pixels, which are wrapped as
PNG here. A payload that cannot be decoded is an error, never a silent empty result.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from genqueue.providers.png import encode_png, png_size

ELIDED = "<image elided>"


class UndecodableImage(ValueError):
    pass


def _b64(text: str) -> bytes:
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise UndecodableImage(f"invalid base64 image: {exc}") from exc


def decode_image(payload: Any) -> bytes:
    """One image payload as PNG bytes."""
    if isinstance(payload, str):
        data = _b64(payload)
    elif isinstance(payload, dict) and isinstance(payload.get("base64"), str):
        data = _b64(payload["base64"])
        if payload.get("type") == "rgba_bytes":
            try:
                width, height = int(payload["width"]), int(payload["height"])
                return encode_png(width, height, data)
            except (KeyError, TypeError, ValueError) as exc:
                raise UndecodableImage(f"invalid rgba_bytes image: {exc}") from exc
    else:
        raise UndecodableImage(f"unexpected image payload of type {type(payload).__name__}")
    try:
        png_size(data)
    except ValueError as exc:
        raise UndecodableImage("image payload is not a PNG") from exc
    return data


def find_images(body: Any, fields: Iterable[str]) -> list[Any] | None:
    """The image payloads in a response body (or a job's ``last_response``), if any."""
    if not isinstance(body, dict):
        return None
    for name in fields:
        value = body.get(name)
        if isinstance(value, list) and value:
            return value
        if value is not None and not isinstance(value, list):
            return [value]
    return None


def elide(value: Any) -> Any:
    """A copy of a response with image payloads replaced, small enough to store."""
    if isinstance(value, dict):
        if isinstance(value.get("base64"), str):
            return {**{k: v for k, v in value.items() if k != "base64"}, "base64": ELIDED}
        return {k: elide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [elide(v) for v in value]
    if isinstance(value, str) and len(value) > 512:
        return value[:64] + "...<elided>"
    return value
