"""``AutoRedriver``: applies the auto-redrive policies, from one worker at a time.

Every worker of the app calls ``step()`` on a schedule; the one holding the
``leader:auto-redrive`` lease (a one-slot set in the backend's shared state, renewed each
step, taken over when its holder dies) does the work. A step reads the matching entries
through the DLQ indexes (one filter per kind x task x fingerprint named), skips entries
at ``max_redrives``, and redrives at most the policy's per-minute budget, through the
same ``redrive_many`` an operator uses (atomic moves, ``dlq_retry`` events saying
``by="auto-redrive:<policy>"``, the job's ``meta["redrives"]`` log).
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from genqueue.autoredrive.policy import AutoRedrivePolicy
from genqueue.classify import ErrorKind
from genqueue.entry import DLQFilter
from genqueue.events import EventName

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.autoredrive")

LEADER_KEY = "leader:auto-redrive"


class AutoRedriver:
    def __init__(
        self,
        app: App,
        policies: Sequence[AutoRedrivePolicy],
        *,
        healthy: Callable[[], Awaitable[bool]] | None = None,
        interval: float = 30.0,
        holder: str | None = None,
    ) -> None:
        names = [p.name for p in policies]
        if len(set(names)) != len(names):
            raise ValueError("auto-redrive policy names must be unique")
        self.app = app
        self.policies = list(policies)
        #: Whether no provider breaker is open (``wait_for_breakers`` policies ask it).
        self.healthy = healthy
        self.interval = interval
        self.holder = holder or f"auto-redrive-{secrets.token_hex(4)}"
        self._recent: dict[str, list[tuple[float, int]]] = {p.name: [] for p in policies}

    def install(self) -> None:
        """Have the app's workers run ``step`` every ``interval`` seconds."""
        self.app.periodic("auto-redrive", self.interval, self.step)

    async def lead(self) -> bool:
        ttl = max(3 * self.interval, 10.0)
        return await self.app.backend.slot_acquire(LEADER_KEY, self.holder, 1, ttl)

    async def step(self) -> dict[str, int]:
        """One round: redrive what each policy allows now; returns counts per policy."""
        if not self.policies or not await self.lead():
            return {}
        healthy: bool | None = None
        done: dict[str, int] = {}
        for policy in self.policies:
            if policy.wait_for_breakers:
                if healthy is None:
                    healthy = await self.healthy() if self.healthy is not None else True
                if not healthy:
                    continue
            done[policy.name] = await self._apply(policy)
        return done

    async def _apply(self, policy: AutoRedrivePolicy) -> int:
        budget = self._budget(policy)
        if budget <= 0:
            return 0
        now = await self.app.backend.time()
        # Dead for at least ``cooldown``: failed_at <= now - cooldown (``until`` excludes).
        until = math.nextafter(now - policy.cooldown, math.inf)
        ids = await self._candidates(policy, until, budget)
        if not ids:
            return 0
        report = await self.app.dlq.redrive_many(ids, by=f"auto-redrive:{policy.name}")
        count = len(report.redriven)
        self._recent[policy.name].append((time.monotonic(), count))
        self.app.events.emit(
            EventName.DLQ_AUTO_REDRIVE,
            policy=policy.name,
            count=count,
            refused=len(report.refused),
            job_ids=report.redriven[:100],
        )
        return count

    def _budget(self, policy: AutoRedrivePolicy) -> int:
        cutoff = time.monotonic() - 60.0
        recent = [(t, n) for t, n in self._recent[policy.name] if t > cutoff]
        self._recent[policy.name] = recent
        return policy.per_minute - sum(n for _, n in recent)

    async def _candidates(self, policy: AutoRedrivePolicy, until: float, budget: int) -> list[str]:
        max_redrives = self.app.retention.max_redrives
        ids: list[str] = []
        kinds: list[ErrorKind | None] = [*sorted(policy.error_kinds)] or [None]
        tasks: list[str | None] = [*sorted(policy.tasks)] or [None]
        prints: list[str | None] = [*sorted(policy.fingerprints)] or [None]
        combos = itertools.product(kinds, tasks, prints)
        for kind, task, fingerprint in combos:
            wanted = DLQFilter(error_kind=kind, task=task, fingerprint=fingerprint, until=until)
            async for entry in self.app.dlq.iterate(wanted):
                if entry.redrive_count < max_redrives and policy.matches(entry):
                    ids.append(entry.job_id)
                    if len(ids) >= budget:
                        return ids
        return ids
