"""The app ``bench/service_load.py`` serves: a no-op submit target and the tasks its dead
letters belong to (``genqueue serve --app service_app:app``, with ``bench/`` on
``PYTHONPATH``). The tasks never run: the server is started with ``--no-workers``."""

from __future__ import annotations

from typing import Any

from genqueue import App

app = App()

SUBMIT_TASK = "bench.noop"
#: (task, queue) pairs of the dead letter entries.
DLQ_TASKS = (
    ("images.generate", "images"),
    ("images.animate", "images"),
    ("images.upscale", "images"),
    ("audio.speak", "audio"),
    ("text.caption", "text"),
)


async def _never(ctx: Any) -> None:
    raise AssertionError("the load check runs no workers")


app.task(SUBMIT_TASK, queue="bench")(_never)
for _name, _queue in DLQ_TASKS:
    app.task(_name, queue=_queue)(_never)
