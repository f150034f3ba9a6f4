"""A faithful fake PixelLab API server for tests and the demo (no network, no real key).

It follows ``shared/research/pixellab.md`` §1.3-1.6 and §4.4: a stdlib
``ThreadingHTTPServer`` on loopback that speaks PixelLab's v2 API (plus two v1 routes),
bills an in-memory account, limits concurrency per token, and injects faults on demand.

Python API::

    from genqueue.providers.fake_pixellab import FakePixelLab, FakeOptions, faults

    with FakePixelLab(FakeOptions(tokens={"test-key-123": "main"})) as fake:
        fake.base_url                     # "http://127.0.0.1:PORT/v2"
        fake.add_fault("POST /v2/create-image-*", faults.gateway_fault(502), times=2)
        ...                               # drive your client against fake.base_url
        fake.stats()["charges_by_client_job"]   # {"job-1": 1}

    serve("127.0.0.1", 8765, FakeOptions.demo(seed=7))   # foreground, until Ctrl-C

Routes (all JSON; ``Authorization: Bearer <token>``; errors are ``{"detail": ...}``):

* sync, 200 ``{"image": Base64Image, "usage": {"type": "usd", "usd", "generations"}}``:
  ``POST /v2/create-image-pixflux`` (sides 16..400, area 32x32..400x400),
  ``POST /v2/create-image-bitforge`` (sides 16..200, area <= 200x200),
  ``POST /v1/generate-image-pixflux`` (v1 usage: no ``generations``).
* async: ``POST /v2/generate-image-v2`` -> 202 ``{"background_job_id", "status"}``
  (64/16/4/1 images by size); ``POST /v2/generate-8-rotations-v3`` (8 images) and
  ``POST /v2/animate-with-text-v3`` (``n_frames``, default 4) -> 200 with
  ``background_job_id``; ``POST /v2/create-character-with-4-directions`` -> 200
  ``{"background_job_id", "character_id"}`` (4 images); ``POST /v2/animate-character``
  -> 200 ``{"background_job_ids": [one per direction], "character_id"}`` (the character
  must exist, else 404); ``POST /v2/create-tileset`` -> 200 legacy ``{"job_id",
  "tileset_id"}`` (16 tiles). The table is :data:`routes.ROUTES`.
* ``GET /v2/background-jobs/{id}`` -> ``{"id", "status", "created_at", "last_response",
  "usage"}``; completed jobs answer ``last_response.images`` (``.image`` for one-image
  jobs if ``result_shape="image_when_single"``), failed ones ``last_response.detail``.
* ``GET /v2/balance`` (v2 shape) and ``GET /v1/balance`` (``{"type": "usd", "usd"}``).

Order of checks: 404/405 route, fault, 401, 422 (free), then 529 (sync) / 402 / 429
(async), then the charge. Control routes live under ``/_fake/`` (see :mod:`control`).
"""

from genqueue.providers.fake_pixellab import faults
from genqueue.providers.fake_pixellab.fake import DEFAULT_PORT, FakePixelLab, serve
from genqueue.providers.fake_pixellab.faults import (
    Fault,
    FaultRule,
    accept_then_fail,
    delay_fault,
    demo_fault_mix,
    drop_fault,
    fail_job,
    gateway_fault,
    hang_fault,
    status_fault,
)
from genqueue.providers.fake_pixellab.options import DEFAULT_TOKEN, FakeOptions
from genqueue.providers.fake_pixellab.routes import ROUTES, Route

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TOKEN",
    "ROUTES",
    "FakeOptions",
    "FakePixelLab",
    "Fault",
    "FaultRule",
    "Route",
    "accept_then_fail",
    "delay_fault",
    "demo_fault_mix",
    "drop_fault",
    "fail_job",
    "faults",
    "gateway_fault",
    "hang_fault",
    "serve",
    "status_fault",
]
