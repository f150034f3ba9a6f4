"""Which queues exist, and which queue each job is in.

Scripts work on one queue, but some calls name only a job id (heartbeat, get, DLQ
delete). Jobs never change queue, so the queue of each job this process has seen is
remembered, the newest 5,000 (a worker that ran a million jobs must not hold a million
ids); other ids are looked up in every queue of the registry, a set
outside any queue that enqueue and fetch keep current (re-adding their queues now and
then, in case Redis lost it in a restart without persistence).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from genqueue.backends.redis.connection import Connection
from genqueue.backends.redis.keys import KeySchema

#: Queues are re-added to the registry this often (seconds).
REGISTER_EVERY = 30.0
#: Job ids whose queue is remembered (~240 bytes each), the newest; a job forgotten is
#: found again with one pipelined probe. The soak (bench/soak.py) saw each 20,000 ids
#: add ~5 MiB to a worker's RSS.
REMEMBER_MAX = 5_000
#: How long ``locate`` trusts the list of queues it read (seconds); a job not found in
#: them is looked for again in a fresh list, so a new queue is never missed.
QUEUES_TRUSTED_FOR = 5.0


class QueueRegistry:
    def __init__(self, keys: KeySchema, conn: Callable[[], Connection]) -> None:
        self.keys = keys
        self._conn = conn
        self._where: OrderedDict[str, str] = OrderedDict()
        self._registered: dict[str, float] = {}  # queue -> when it was last registered
        self._known: tuple[float, list[str]] | None = None  # (when read, queues)

    def remember(self, job_id: str, queue: str) -> None:
        self._where[job_id] = queue
        if len(self._where) > REMEMBER_MAX:
            self._where.popitem(last=False)

    def remembered(self, job_id: str) -> str | None:
        return self._where.get(job_id)

    async def queues(self) -> list[str]:
        """Every queue that has ever had a job."""
        conn = self._conn()
        members = await conn.call("SMEMBERS", lambda: conn.redis.smembers(self.keys.queues_key))
        found = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        self._known = (time.monotonic(), found)
        return found

    async def recent_queues(self) -> tuple[list[str], bool]:
        """(queues, fresh): the list read at most ``QUEUES_TRUSTED_FOR`` ago, else a new
        one. ``fresh`` says whether it was just read (a miss in an older list must look
        again)."""
        if self._known is not None and time.monotonic() - self._known[0] < QUEUES_TRUSTED_FOR:
            return self._known[1], False
        return await self.queues(), True

    def registered_lately(self, queue: str) -> bool:
        """Whether ``register`` has nothing to do for ``queue`` now."""
        return time.monotonic() - self._registered.get(queue, -REGISTER_EVERY) < REGISTER_EVERY

    async def register(self, queues: Sequence[str]) -> None:
        todo = [q for q in queues if not self.registered_lately(q)]
        if todo:
            now = time.monotonic()
            conn = self._conn()
            await conn.call("SADD", lambda: conn.redis.sadd(self.keys.queues_key, *todo))
            self._registered.update(dict.fromkeys(todo, now))

    async def locate(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Queue of each job id that exists (remembered, else asked of every queue)."""
        found = {i: self._where[i] for i in job_ids if i in self._where}
        missing = [i for i in dict.fromkeys(job_ids) if i not in found]
        if not missing:
            return found
        queues, fresh = await self.recent_queues()
        found.update(await self._probe(missing, queues))
        missing = [i for i in missing if i not in found]
        if missing and not fresh:  # maybe in a queue made since the list was read
            new = [q for q in await self.queues() if q not in queues]
            found.update(await self._probe(missing, new))
        return found

    async def _probe(self, job_ids: Sequence[str], queues: Sequence[str]) -> dict[str, str]:
        pairs = [(q, i) for i in job_ids for q in queues]
        if not pairs:
            return {}
        found = await self._probe_in("hot", pairs)
        # A dead job kept whole has no hot record: its entry is where it is.
        rest = [(q, i) for q, i in pairs if i not in found]
        return {**found, **(await self._probe_in("dlq", rest) if rest else {})}

    async def _probe_in(self, name: str, pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
        conn = self._conn()

        async def probe() -> list[int]:
            pipe = conn.redis.pipeline(transaction=False)
            for queue, job_id in pairs:
                pipe.hexists(self.keys.queue(queue)[name], job_id)
            return list(await pipe.execute())

        found: dict[str, str] = {}
        for (queue, job_id), exists in zip(pairs, await conn.call("HEXISTS", probe), strict=True):
            if exists:
                found[job_id] = queue
                self.remember(job_id, queue)
        return found
