"""PNG encoding and procedural pixel-art sprites for the fake PixelLab server.

Owns: turning a (description, seed, variant) triple into a deterministic, horizontally
symmetric little sprite (identicon style) of exactly the requested size, encoding RGBA
pixels as a valid PNG (with :mod:`genqueue.providers.png`), and wrapping the result in the
JSON image shapes PixelLab answers with (``base64``, ``data:`` URI, ``rgba_bytes``).
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import random
from dataclasses import dataclass
from typing import Any, Literal

from genqueue.providers.png import encode_png

ImageEncoding = Literal["base64", "data_uri", "rgba_bytes"]

_TRANSPARENT = b"\x00\x00\x00\x00"
_GRID_CELLS = 16  # the sprite is drawn on roughly a 16x16 grid of blocks


@dataclass(frozen=True)
class ImageSpec:
    """What one remote job (or one sync call) renders: ``count`` sprites of one size."""

    description: str
    seed: int
    width: int
    height: int
    transparent: bool
    count: int = 1


def _hsv(h: float, s: float, v: float) -> bytes:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return bytes((round(r * 255), round(g * 255), round(b * 255), 255))


def _palette(description: str, seed: int) -> dict[str, bytes]:
    digest = hashlib.sha256(f"{description}\x00{seed}".encode()).digest()
    hue = digest[0] / 255.0
    sat = 0.5 + digest[1] / 255.0 * 0.4
    return {
        "light": _hsv(hue, sat * 0.6, 0.97),
        "base": _hsv(hue, sat, 0.8),
        "dark": _hsv(hue, min(1.0, sat + 0.1), 0.5),
        "outline": _hsv(hue, 0.8, 0.18),
        "accent": _hsv(hue + 0.5, 0.75, 0.95),
        "background": _hsv(hue + 0.25, 0.12, 0.96),
    }


def _shape(rng: random.Random, cols: int, rows: int) -> list[list[bool]]:
    """A symmetric blob mask with a one-cell empty border (room for the outline)."""
    mask = [[False] * cols for _ in range(rows)]
    half = (cols + 1) // 2
    for cy in range(1, rows - 1):
        dy = abs(cy + 0.5 - rows / 2) / (rows / 2)
        for cx in range(1, half):
            dx = (half - cx) / half
            keep = rng.random() < 0.9 - 0.75 * max(dx, dy)
            core = dx < 0.3 and dy < 0.5
            mask[cy][cx] = mask[cy][cols - 1 - cx] = keep or core
    return mask


def _neighbour_filled(mask: list[list[bool]], cx: int, cy: int) -> bool:
    rows, cols = len(mask), len(mask[0])
    for nx, ny in ((cx - 1, cy), (cx + 1, cy), (cx, cy - 1), (cx, cy + 1)):
        if 0 <= nx < cols and 0 <= ny < rows and mask[ny][nx]:
            return True
    return False


def _cell_colour(mask: list[list[bool]], cx: int, cy: int, colours: dict[str, bytes]) -> bytes:
    rows = len(mask)
    if not mask[cy][cx]:
        return colours["outline"] if _neighbour_filled(mask, cx, cy) else colours["empty"]
    if cy < rows / 3:
        return colours["light"]
    if cy >= rows * 2 / 3:
        return colours["dark"]
    return colours["base"]


def _add_eyes(
    rng: random.Random, mask: list[list[bool]], grid: list[list[bytes]], eye: bytes
) -> None:
    rows, cols = len(mask), len(mask[0])
    cy = max(1, rows // 3 + rng.randint(0, max(0, rows // 6)))
    cx = max(1, cols // 2 - 1 - rng.randint(0, max(0, cols // 6)))
    if mask[cy][cx]:
        grid[cy][cx] = grid[cy][cols - 1 - cx] = eye


def sprite_rgba(spec: ImageSpec, variant: int = 0) -> bytes:
    """Render sprite number ``variant`` of ``spec`` as raw RGBA bytes (deterministic)."""
    width, height = spec.width, spec.height
    colours = _palette(spec.description, spec.seed)
    colours["empty"] = _TRANSPARENT if spec.transparent else colours["background"]
    cell = max(1, min(width, height) // _GRID_CELLS)
    cols, rows = -(-width // cell), -(-height // cell)
    rng = random.Random(f"{spec.description}\x00{spec.seed}\x00{variant}")
    mask = _shape(rng, max(cols, 3), max(rows, 3))
    grid = [[_cell_colour(mask, cx, cy, colours) for cx in range(cols)] for cy in range(rows)]
    _add_eyes(rng, mask, grid, colours["accent"])
    row_bytes = []
    for cy in range(rows):
        parts = [grid[cy][cx] * min(cell, width - cx * cell) for cx in range(cols)]
        row_bytes.append(b"".join(parts))
    return b"".join(row_bytes[y // cell] for y in range(height))


def image_payload(spec: ImageSpec, variant: int, encoding: ImageEncoding) -> dict[str, Any]:
    """One rendered sprite in a PixelLab response shape (``Base64Image`` or ``rgba_bytes``)."""
    rgba = sprite_rgba(spec, variant)
    if encoding == "rgba_bytes":
        return {
            "type": "rgba_bytes",
            "width": spec.width,
            "height": spec.height,
            "base64": base64.b64encode(rgba).decode("ascii"),
        }
    b64 = base64.b64encode(encode_png(spec.width, spec.height, rgba)).decode("ascii")
    if encoding == "data_uri":
        b64 = "data:image/png;base64," + b64
    return {"type": "base64", "base64": b64, "format": "png"}


def render_all(spec: ImageSpec, encoding: ImageEncoding) -> list[dict[str, Any]]:
    """All ``spec.count`` sprites of a job, variants 0..count-1."""
    return [image_payload(spec, i, encoding) for i in range(spec.count)]
