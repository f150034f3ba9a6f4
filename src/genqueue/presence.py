"""Which workers are alive, what they serve and how busy they are, as every process sees it.

Each worker writes its own line into one shared-state record (``workers``) when it
starts, on every heartbeat and when it stops. A line not refreshed for ``stale_after``
seconds belongs to a worker that died without saying so (kill -9, a lost machine); readers
ignore it and the next writer drops it. The record is small (one line per live worker) and
changed by compare-and-set, so concurrent workers never lose each other's lines.

This feeds the workers and busy-slots gauges, ``genqueue stats`` and the HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genqueue.app import App

KEY = "workers"
#: Write attempts before a beat gives up for this round (another round follows soon).
_TRIES = 20


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    started_at: float
    seen_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "busy": self.busy,
            "started_at": self.started_at,
            "seen_at": self.seen_at,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorkerInfo:
        return cls(
            id=str(raw["id"]),
            queues=tuple(raw.get("queues", ())),
            concurrency=int(raw.get("concurrency", 0)),
            busy=int(raw.get("busy", 0)),
            started_at=float(raw.get("started_at", 0.0)),
            seen_at=float(raw.get("seen_at", 0.0)),
        )


async def beat(app: App, info: WorkerInfo, stale_after: float) -> bool:
    """Write (or refresh) this worker's line; drop lines of workers gone silent."""
    return await _change(app, info.id, info.to_dict(), info.seen_at - stale_after)


async def leave(app: App, worker_id: str) -> bool:
    """Remove this worker's line (a clean stop)."""
    return await _change(app, worker_id, None, None)


async def live_workers(app: App, stale_after: float) -> list[WorkerInfo]:
    """Workers that beat within ``stale_after`` seconds, oldest first."""
    found = await app.backend.state_get(KEY)
    now = await app.backend.time()
    lines = (found[0] or {}) if found else {}
    infos = [WorkerInfo.from_dict(raw) for raw in lines.values()]
    return sorted((w for w in infos if w.seen_at >= now - stale_after), key=lambda w: w.started_at)


async def _change(
    app: App, worker_id: str, line: dict[str, Any] | None, drop_before: float | None
) -> bool:
    for _ in range(_TRIES):
        found = await app.backend.state_get(KEY)
        lines: dict[str, Any] = dict(found[0] or {}) if found else {}
        if drop_before is not None:
            lines = {k: v for k, v in lines.items() if float(v["seen_at"]) >= drop_before}
        if line is None:
            if worker_id not in lines:
                return True
            del lines[worker_id]
        else:
            lines[worker_id] = line
        if await app.backend.state_put(KEY, lines, expect_version=found[1] if found else 0):
            return True
    return False
