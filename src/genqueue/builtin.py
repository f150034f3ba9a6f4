"""The built-in app the CLI uses when no ``--app`` is given: genqueue's own tasks.

* ``pixellab.generate`` (queue ``pixellab``): PixelLab generation; the worker needs
  ``PIXELLAB_API_KEY`` (and ``PIXELLAB_BASE_URL`` to point it at the fake).
* ``demo.generate`` (queue ``demo``): simulated generation that fails on purpose, to try
  the CLI and the DLQ without any provider.
"""

from __future__ import annotations

from genqueue import simulated
from genqueue.app import App
from genqueue.providers import pixellab


def create_app(backend: str | None = None) -> App:
    app = App(backend)
    simulated.register(app)
    pixellab.register_deferred(app)  # the HTTP client loads when a worker runs a job
    return app
