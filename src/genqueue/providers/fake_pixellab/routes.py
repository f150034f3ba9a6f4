"""The fake PixelLab route table (as data) and per-route request validation.

Owns: the pydantic v2 request models (real PixelLab field names and limits where known),
the :data:`ROUTES` table (operation, method, path, sync/async, submit status, where the job
id goes in the answer, cost), and :func:`validate`, which turns a raw JSON body into a model
or a FastAPI-style ``422`` ``detail`` list.

Limits marked [UNVERIFIED] in the research notes (v2 Pro size range, v3 and character
request bodies) are plausible guesses, documented here as the fake's contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from genqueue.providers.fake_pixellab.png import ImageSpec

Description = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Outline = Literal[
    "single color black outline", "single color outline", "selective outline", "lineless"
]
Shading = Literal[
    "flat shading", "basic shading", "medium shading", "detailed shading", "highly detailed shading"
]
Detail = Literal["low detail", "medium detail", "highly detailed"]
CameraView = Literal["side", "low top-down", "high top-down"]
Direction = Literal[
    "south", "south-east", "east", "north-east", "north", "north-west", "west", "south-west"
]
IdField = Literal["background_job_id", "job_id", "background_job_ids"]
DIRECTIONS_4: tuple[Direction, ...] = ("south", "west", "east", "north")


class _Body(BaseModel):
    """Base of every request body: unknown fields are ignored (PixelLab accepts them)."""

    model_config = ConfigDict(extra="ignore")

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        """One :class:`ImageSpec` per remote job (sync routes: exactly one)."""
        raise NotImplementedError

    def character_ref(self) -> str | None:
        """The existing character this request refers to (``animate-character``)."""
        return None


class Base64Image(BaseModel):
    """PixelLab's image input object."""

    type: Literal["base64"] = "base64"
    base64: str
    format: str = "png"


class _Size(BaseModel):
    """``{"width", "height"}`` with per-route side and area limits (set by subclasses)."""

    min_side: ClassVar[int] = 16
    max_side: ClassVar[int] = 400
    min_area: ClassVar[int] = 32 * 32
    max_area: ClassVar[int] = 400 * 400

    width: int
    height: int

    @field_validator("width", "height")
    @classmethod
    def _side(cls, value: int) -> int:
        if value < cls.min_side:
            raise PydanticCustomError(
                "greater_than_equal",
                "Input should be greater than or equal to {ge}",
                {"ge": cls.min_side},
            )
        if value > cls.max_side:
            raise PydanticCustomError(
                "less_than_equal",
                "Input should be less than or equal to {le}",
                {"le": cls.max_side},
            )
        return value

    @model_validator(mode="after")
    def _area(self) -> Self:
        area = self.width * self.height
        if not self.min_area <= area <= self.max_area:
            raise ValueError(
                f"image area must be between {self.min_area} and {self.max_area} pixels"
            )
        return self


class PixfluxSize(_Size):
    """Pixflux: area 32x32 .. 400x400, sides 16..400."""


class BitforgeSize(_Size):
    """Bitforge: area up to 200x200, sides 16..200."""

    max_side = 200
    max_area = 200 * 200


class ProSize(_Size):
    """generate-image-v2 [UNVERIFIED range]: sides 16..400, any area in that box."""

    min_area = 16 * 16


class CharacterSize(_Size):
    """Characters, rotations, animations [UNVERIFIED]: sides 16..256."""

    max_side = 256
    min_area = 16 * 16
    max_area = 256 * 256


class TileSize(_Size):
    """Tileset tiles [UNVERIFIED]: sides 16..64."""

    max_side = 64
    min_area = 16 * 16
    max_area = 64 * 64


class PixfluxRequest(_Body):
    """``POST /v2/create-image-pixflux`` (and v1 ``generate-image-pixflux``)."""

    description: Description
    image_size: PixfluxSize
    negative_description: str = ""
    text_guidance_scale: float | None = Field(default=None, ge=1, le=20)
    outline: Outline | None = None
    shading: Shading | None = None
    detail: Detail | None = None
    view: CameraView | None = None
    direction: Direction | None = None
    isometric: bool = False
    no_background: bool = False
    coverage_percentage: float | None = Field(default=None, ge=0, le=100)
    init_image: Base64Image | None = None
    init_image_strength: int = Field(default=300, ge=1, le=999)
    color_image: Base64Image | None = None
    seed: int | None = Field(default=None, ge=0)

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        size = self.image_size
        spec = ImageSpec(
            self.description, self.seed or 0, size.width, size.height, self.no_background
        )
        return [spec]


class BitforgeRequest(PixfluxRequest):
    """``POST /v2/create-image-bitforge``: pixflux fields plus a style image."""

    image_size: BitforgeSize  # type: ignore[assignment]
    style_image: Base64Image | None = None
    style_strength: float | None = Field(default=None, ge=0, le=100)
    inpainting_image: Base64Image | None = None
    mask_image: Base64Image | None = None


def pro_image_count(width: int, height: int) -> int:
    """generate-image-v2 output count: 64 up to 42 px, 16 to 85, 4 to 170, else 1."""
    side = max(width, height)
    if side <= 42:
        return 64
    if side <= 85:
        return 16
    if side <= 170:
        return 4
    return 1


class ImageV2Request(_Body):
    """``POST /v2/generate-image-v2`` (Pro, async, 202)."""

    description: Description
    image_size: ProSize
    no_background: bool = False
    seed: int | None = Field(default=None, ge=0)
    reference_images: list[Base64Image] | None = None

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        w, h = self.image_size.width, self.image_size.height
        count = pro_image_count(w, h)
        return [ImageSpec(self.description, self.seed or 0, w, h, self.no_background, count)]


class RotationsV3Request(_Body):
    """``POST /v2/generate-8-rotations-v3``: a description or a reference image; 8 images."""

    description: Description | None = None
    reference_image: Base64Image | None = None
    image_size: CharacterSize = Field(default_factory=lambda: CharacterSize(width=64, height=64))
    no_background: bool = True
    seed: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _needs_subject(self) -> Self:
        if self.description is None and self.reference_image is None:
            raise ValueError("either description or reference_image is required")
        return self

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        w, h = self.image_size.width, self.image_size.height
        text = self.description or "reference"
        return [ImageSpec(text, self.seed or 0, w, h, self.no_background, 8)]


class AnimateTextV3Request(_Body):
    """``POST /v2/animate-with-text-v3``: ``n_frames`` frames (fake default 4)."""

    description: Description
    action: Description | None = None
    reference_image: Base64Image | None = None
    image_size: CharacterSize = Field(default_factory=lambda: CharacterSize(width=64, height=64))
    n_frames: int = Field(default=4, ge=2, le=16)
    seed: int | None = Field(default=None, ge=0)

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        w, h = self.image_size.width, self.image_size.height
        text = f"{self.description} {self.action or ''}".strip()
        return [ImageSpec(text, self.seed or 0, w, h, True, self.n_frames)]


class Character4Request(_Body):
    """``POST /v2/create-character-with-4-directions``: 4 images (S, W, E, N)."""

    description: Description
    image_size: CharacterSize = Field(default_factory=lambda: CharacterSize(width=64, height=64))
    seed: int | None = Field(default=None, ge=0)

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        w, h = self.image_size.width, self.image_size.height
        return [ImageSpec(self.description, self.seed or 0, w, h, True, 4)]


class UnknownCharacter(LookupError):
    """``animate-character`` named a character this account never created (answer 404)."""


class AnimateCharacterRequest(_Body):
    """``POST /v2/animate-character``: one job per direction, ``n_frames`` each."""

    character_id: Annotated[str, StringConstraints(min_length=1)]
    action: Description
    directions: list[Direction] = Field(default_factory=lambda: list(DIRECTIONS_4))
    n_frames: int = Field(default=4, ge=2, le=16)

    def character_ref(self) -> str | None:
        return self.character_id

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        base = characters(self.character_id)
        if base is None:
            raise UnknownCharacter(self.character_id)
        return [
            ImageSpec(
                f"{base.description} {self.action} {d}",
                base.seed,
                base.width,
                base.height,
                True,
                self.n_frames,
            )
            for d in self.directions
        ]


class TilesetRequest(_Body):
    """``POST /v2/create-tileset`` (legacy ``job_id`` answer): 16 Wang tiles."""

    lower_description: Description
    upper_description: Description
    tile_size: TileSize = Field(default_factory=lambda: TileSize(width=16, height=16))
    seed: int | None = Field(default=None, ge=0)

    def outputs(self, characters: Callable[[str], ImageSpec | None]) -> list[ImageSpec]:
        text = f"{self.lower_description} / {self.upper_description}"
        w, h = self.tile_size.width, self.tile_size.height
        return [ImageSpec(text, self.seed or 0, w, h, False, 16)]


@dataclass(frozen=True)
class Route:
    """One generation endpoint of the fake, as data."""

    operation: str
    method: str
    path: str
    kind: Literal["sync", "async"]
    submit_status: int
    id_field: IdField | None
    cost_usd: float
    generations: int
    model: type[_Body]
    extra_id: str | None = None  # e.g. "character_id" returned next to the job id
    usage_shape: Literal["v1", "v2"] = "v2"
    poll_path: str = "/v2/background-jobs/{id}"
    creates_character: bool = False


ROUTES: tuple[Route, ...] = (
    Route("create-image-pixflux", "POST", "/v2/create-image-pixflux", "sync", 200, None,
          0.01, 1, PixfluxRequest),
    Route("create-image-bitforge", "POST", "/v2/create-image-bitforge", "sync", 200, None,
          0.01, 1, BitforgeRequest),
    Route("generate-image-v2", "POST", "/v2/generate-image-v2", "async", 202,
          "background_job_id", 0.05, 5, ImageV2Request),
    Route("generate-8-rotations-v3", "POST", "/v2/generate-8-rotations-v3", "async", 200,
          "background_job_id", 0.08, 8, RotationsV3Request),
    Route("animate-with-text-v3", "POST", "/v2/animate-with-text-v3", "async", 200,
          "background_job_id", 0.08, 8, AnimateTextV3Request),
    Route("create-character-with-4-directions", "POST",
          "/v2/create-character-with-4-directions", "async", 200, "background_job_id",
          0.1, 10, Character4Request, extra_id="character_id", creates_character=True),
    Route("animate-character", "POST", "/v2/animate-character", "async", 200,
          "background_job_ids", 0.2, 20, AnimateCharacterRequest, extra_id="character_id"),
    Route("create-tileset", "POST", "/v2/create-tileset", "async", 200, "job_id",
          0.05, 5, TilesetRequest, extra_id="tileset_id"),
    Route("v1-generate-image-pixflux", "POST", "/v1/generate-image-pixflux", "sync", 200, None,
          0.01, 1, PixfluxRequest, usage_shape="v1"),
)  # fmt: skip

ROUTES_BY_PATH: dict[str, Route] = {route.path: route for route in ROUTES}
ROUTES_BY_OPERATION: dict[str, Route] = {route.operation: route for route in ROUTES}


def _fastapi_error(error: Any) -> dict[str, Any]:
    loc = ["body", *error["loc"]]
    return {"type": error["type"], "loc": loc, "msg": error["msg"], "input": error["input"]}


def validate(model: type[_Body], raw: bytes) -> _Body | list[dict[str, Any]]:
    """Parse and validate a JSON body: the model, or a FastAPI ``422`` ``detail`` list."""
    if not raw.strip():
        return [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        return [{"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error",
                 "input": {}}]  # fmt: skip
    if not isinstance(data, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return [{"type": "model_attributes_type", "loc": ["body"], "msg": msg, "input": data}]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        return [_fastapi_error(e) for e in errors]
