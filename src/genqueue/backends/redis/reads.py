"""Reading stored jobs: many by (queue, id), and one by its id alone.

A job's parts (body, hot record, progress, patches, dead letter entry, stacks) come back
from one ``read_jobs`` script call per queue and chunk. A job named only by its id is
found in one round trip when its queue is remembered, or when the queues are few enough
to read it in each of them at once (one pipeline); beyond that its queue is probed first.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

from genqueue.backends.redis import codec, scripts
from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema
from genqueue.backends.redis.registry import QueueRegistry
from genqueue.entry import DeadLetter
from genqueue.job import Job

#: Jobs read per script call.
CHUNK = 500
#: Up to this many queues, a job nobody remembers is read in every queue at once.
READ_EVERYWHERE_MAX = 16

Loaded = tuple[Job, DeadLetter | None]


class Reader:
    def __init__(
        self,
        conn: Callable[[], Connection],
        keys: KeySchema,
        registry: QueueRegistry,
        clock: Callable[[], str],
    ) -> None:
        self._conn, self.keys, self.registry, self._clock = conn, keys, registry, clock

    async def read(self, queue: str, job_ids: Sequence[str]) -> list[scripts.Stored | None]:
        out: list[scripts.Stored | None] = []
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            reply = await scripts.read_jobs(
                self._conn().evaluate, self.keys.queue(queue), self._clock(), chunk
            )
            out += reply.jobs
        return out

    async def load(self, items: Sequence[tuple[str, str]]) -> dict[str, Loaded]:
        """Jobs and their entries by (queue, id), the queues read at once."""
        by_queue: dict[str, list[str]] = defaultdict(list)
        for queue, job_id in items:
            by_queue[queue].append(job_id)
        replies = await asyncio.gather(*(self.read(q, ids) for q, ids in by_queue.items()))
        out: dict[str, Loaded] = {}
        for (queue, ids), stored in zip(by_queue.items(), replies, strict=True):
            for job_id, item in zip(ids, stored, strict=True):
                if item is not None:
                    out[job_id] = decode(job_id, queue, item)
        return out

    async def find(self, job_id: str) -> Loaded | None:
        """One job (and its entry) by id alone."""
        queue = self.registry.remembered(job_id)
        if queue is not None:
            return (await self.load([(queue, job_id)])).get(job_id)
        queues, fresh = await self.registry.recent_queues()
        if len(queues) > READ_EVERYWHERE_MAX:
            where = await self.registry.locate([job_id])
            return (await self.load([(where[job_id], job_id)])).get(job_id) if where else None
        found = await self._everywhere(job_id, queues)
        if found is None and not fresh:  # maybe in a queue made since the list was read
            new = [q for q in await self.registry.queues() if q not in queues]
            found = await self._everywhere(job_id, new)
        return found

    async def _everywhere(self, job_id: str, queues: Sequence[str]) -> Loaded | None:
        if not queues:
            return None
        clock = self._clock()
        calls = [scripts.read_call(self.keys.queue(q), clock, [job_id]) for q in queues]
        for queue, reply in zip(queues, await self._conn().evaluate_many(calls), strict=True):
            [stored] = scripts.read_reply(reply, 1).jobs
            if stored is not None:
                self.registry.remember(job_id, queue)
                return decode(job_id, queue, stored)
        return None


def decode(job_id: str, queue: str, stored: scripts.Stored) -> Loaded:
    job = codec.decode_job(job_id, queue, stored)
    return job, codec.decode_entry(job_id, queue, stored, job)
