"""The built-in app the CLI uses when no ``--app`` is given: genqueue's own tasks.

It holds the demo's simulated generation task, so that ``genqueue worker``, ``genqueue
enqueue demo.generate ...`` and every read command work on a fresh install.
"""

from __future__ import annotations

from genqueue import demo
from genqueue.app import App


def create_app(backend: str | None = None) -> App:
    app = App(backend)
    demo.register(app)
    return app
