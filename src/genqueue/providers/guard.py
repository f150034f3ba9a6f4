"""Guards shared by every worker that calls one provider account: cooldown, breaker, limits.

All of them live in the backend's shared state (``Backend.state_*`` and ``slot_*``), so a
lesson learned by one worker process holds for all of them, on any backend:

* **Cooldown**: after a 429/529 nobody calls the account until ``Retry-After`` (or a
  backoff that grows with each cooldown in a row) has passed. Rate-limit answers to
  requests that were already in flight during a cooldown do not extend it.
* **Circuit breaker** (``genqueue.providers.breaker``): auth or payment errors, or a run
  of server errors/timeouts, open it; jobs then wait instead of failing into the DLQ.
* **Concurrency limits**, one per *lane*: ``async`` counts jobs the provider runs for us
  (its 429 limit), ``sync`` counts requests in flight (its 529 overload). Each is learned
  AIMD-style: a rate-limit answer halves the limit and sets a ceiling at what was running;
  each accepted request adds ``1/limit`` back, up to the ceiling; a run of ``ceiling``
  acceptances without a rejection raises the ceiling by one (probing, in case the
  account's limit grew).

Keys hold a hash of the API key, never the key: a new key is a new account, whose breaker
starts closed.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Literal

from genqueue.app import App
from genqueue.events import EventName
from genqueue.job import Job, JobState
from genqueue.providers import breaker as breakers
from genqueue.providers import ledger
from genqueue.providers.breaker import ACCOUNTS_KEY, BreakerSettings, Change, Gate

__all__ = ["BreakerSettings", "Gate", "Lane", "ProviderGuard", "account_id", "backoff"]

CAS_TRIES = 20
Lane = Literal["sync", "async"]
#: Rate-limit strikes are forgotten this long after the last cooldown (or at a success).
STRIKE_MEMORY = 60.0
ENDED = (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED)


def account_id(provider: str, api_key: str) -> str:
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:12]
    return f"{provider}:{digest}"


class ProviderGuard:
    def __init__(
        self,
        app: App,
        account: str,
        *,
        breaker: BreakerSettings | None = None,
        max_in_flight: int = 8,
    ) -> None:
        self.app = app
        self.account = account
        self.breaker = breaker or BreakerSettings()
        self.max_in_flight = max_in_flight
        self._cooldown_key = f"cooldown:{account}"
        self._breaker_key = breakers.breaker_key(account)
        self._accepted_key = f"accepted:{account}"
        self._registered = False

    def _limit_key(self, lane: Lane) -> str:
        return f"limit:{self.account}" + ("" if lane == "async" else ":sync")

    def _slots_key(self, lane: Lane) -> str:
        return f"inflight:{self.account}" + ("" if lane == "async" else ":sync")

    async def _now(self) -> float:
        return await self.app.backend.time()

    async def _update(self, key: str, change: Any, ttl: float | None = None) -> Any:
        """Read-modify-write ``key`` with compare-and-set; ``change(value) -> new or None``."""
        backend = self.app.backend
        for _ in range(CAS_TRIES):
            found = await backend.state_get(key)
            value, version = found if found else (None, 0)
            new = change(value)
            if new is None:
                return value
            if await backend.state_put(key, new, expect_version=version, ttl=ttl) is not None:
                return new
        raise RuntimeError(f"shared state {key} is too contended")

    # -- cooldown ---------------------------------------------------------------------------

    async def cooldown_remaining(self) -> float:
        found = await self.app.backend.state_get(self._cooldown_key)
        if not found:
            return 0.0
        return max(0.0, float(found[0]["until"]) - await self._now())

    async def rate_limited(self, retry_after: float | None, reason: str) -> float:
        """A 429/529 came back: start (or keep) the cooldown; return how long it lasts."""
        now = await self._now()
        chosen: dict[str, float] = {}

        def step(value: Any) -> Any:
            value = value or {}
            until = float(value.get("until", 0))
            wanted = now + retry_after if retry_after is not None else 0.0
            if until > now and wanted <= until:
                chosen["until"] = until  # in flight during the cooldown: absorbed
                return None
            strikes = int(value.get("strikes", 0)) + (0 if until > now else 1)
            delay = retry_after if retry_after is not None else backoff(strikes)
            chosen["until"] = max(until, now + delay)
            return {"until": chosen["until"], "reason": reason, "strikes": strikes}

        longest = retry_after if retry_after is not None else backoff(64)
        await self._update(self._cooldown_key, step, ttl=longest + STRIKE_MEMORY)
        return max(0.0, chosen["until"] - now)

    async def rate_limit_passed(self) -> None:
        """A request got through: the next rate limit starts the backoff from the bottom."""
        found = await self.app.backend.state_get(self._cooldown_key)
        if not found or not found[0].get("strikes"):
            return

        def forget(value: Any) -> Any:
            return {**value, "strikes": 0} if value and value.get("strikes") else None

        await self._update(self._cooldown_key, forget, ttl=STRIKE_MEMORY)

    # -- circuit breaker --------------------------------------------------------------------

    async def _register(self) -> None:
        """List this account where ``genqueue stats`` looks for guards (once per process)."""
        if self._registered:
            return

        def add(value: Any) -> Any:
            accounts = list(value or [])
            return None if self.account in accounts else [*accounts, self.account]

        await self._update(ACCOUNTS_KEY, add)
        self._registered = True

    async def admit(self, job_id: str) -> Gate:
        """May ``job_id`` call the provider now? Checks the cooldown and the breaker."""
        await self._register()
        remaining = await self.cooldown_remaining()
        if remaining > 0:
            return Gate(False, remaining, "rate limit cooldown")
        now = await self._now()
        decided: dict[str, Gate] = {}

        def step(value: Any) -> Any:
            gate, new = breakers.admit(value, job_id, now, self.breaker)
            decided["gate"] = gate
            return new

        await self._update(self._breaker_key, step)
        return decided["gate"]

    async def _move(self, job_id: str, change: Any) -> Any:
        """Apply a breaker transition; announce it once (only the write that made it)."""
        changed: dict[str, Change | None] = {}

        def step(value: Any) -> Any:
            new, changed["what"] = change(value)
            return new

        value = await self._update(self._breaker_key, step)
        what = changed.get("what")
        if what == "opened":
            self.app.events.emit(EventName.CIRCUIT_OPENED, provider=self.account,
                                 job_id=job_id, reason=value.get("reason"),
                                 delay=value.get("cooldown"))  # fmt: skip
        elif what == "probe_failed":
            self.app.events.emit(EventName.CIRCUIT_PROBE_FAILED, provider=self.account,
                                 job_id=job_id, delay=value.get("cooldown"))  # fmt: skip
        elif what == "closed":
            self.app.events.emit(EventName.CIRCUIT_CLOSED, provider=self.account, job_id=job_id)
        return value

    async def record_success(self, job_id: str) -> None:
        await self._move(job_id, lambda value: breakers.success(value, job_id))

    async def record_failure(self, job_id: str, kind: str, *, immediate: bool) -> float:
        """Count a failure; return how long the breaker is open for (0 if it is not open)."""
        now = await self._now()

        def change(value: Any) -> Any:
            return breakers.failure(
                value, job_id, now, immediate=immediate, reason=kind, settings=self.breaker
            )

        value = await self._move(job_id, change)
        return breakers.remaining(value, now)

    async def state(self) -> dict[str, Any]:
        """The breaker, cooldown and limits of this account, for ``genqueue stats``."""
        backend = self.app.backend
        found = await backend.state_get(self._breaker_key)
        lanes = {}
        for lane in ("sync", "async"):
            limit = await backend.state_get(self._limit_key(lane))
            lanes[lane] = {
                "in_flight": await backend.slot_count(self._slots_key(lane)),
                "limit": (limit[0] if limit else {}).get("limit", self.max_in_flight),
            }
        book = await backend.state_get(ledger.ledger_key(self.account))
        return {
            "account": self.account,
            "breaker": breakers.describe(
                self.account, found[0] if found else None, await self._now()
            ),
            "cooldown_remaining": round(await self.cooldown_remaining(), 3),
            "lanes": lanes,
            "ledger": ledger.summary(book[0] if book else ledger.new_record()),
        }

    # -- concurrency limits (AIMD) ----------------------------------------------------------

    async def acquire_slot(self, job_id: str, ttl: float, lane: Lane = "async") -> bool:
        found = await self.app.backend.state_get(self._limit_key(lane))
        limit = max(1, int(found[0]["limit"]) if found else self.max_in_flight)
        key = self._slots_key(lane)
        if await self.app.backend.slot_acquire(key, job_id, limit, ttl):
            return True
        # Full: maybe of slots whose jobs will never give them back.
        return await self.reap_slots(lane) > 0 and await self.app.backend.slot_acquire(
            key, job_id, limit, ttl
        )

    async def reap_slots(self, lane: Lane) -> int:
        """Free the slots of jobs that cannot be using them: ended (dead-lettered by a
        reclaim after their worker died, cancelled, deleted), or not running and holding
        nothing remote (a sync request lives only during its attempt; an async slot stands
        for a remote job). Otherwise such a slot would block the lane until its TTL (the
        remote job's deadline, minutes). Returns how many were freed."""
        backend = self.app.backend
        freed = 0
        for holder in await backend.slot_holders(self._slots_key(lane)):
            if _cannot_use_slot(await backend.get(holder), lane):
                await self.release_slot(holder, lane)
                freed += 1
        return freed

    async def hold_slot(self, job_id: str, ttl: float) -> None:
        """Take or renew an async slot whatever the limit: the job already runs remotely."""
        await self.app.backend.slot_acquire(self._slots_key("async"), job_id, 1_000_000, ttl)

    async def release_slot(self, job_id: str, lane: Lane = "async") -> None:
        await self.app.backend.slot_release(self._slots_key(lane), job_id)
        if lane == "async":
            await self.app.backend.slot_release(self._accepted_key, job_id)

    async def on_rate_limited(self, lane: Lane = "async") -> None:
        """Multiplicative decrease; the ceiling is what the provider was running for us."""
        if lane == "async":
            running = await self.app.backend.slot_count(self._accepted_key)
        else:  # this request was one of those in flight, and one too many
            running = await self.app.backend.slot_count(self._slots_key(lane)) - 1

        def decrease(value: Any) -> Any:
            current = float((value or {}).get("limit", self.max_in_flight))
            ceiling = max(1, min(self.max_in_flight, running))
            return {"limit": max(1.0, min(current / 2, ceiling)), "ceiling": ceiling, "streak": 0}

        await self._update(self._limit_key(lane), decrease)

    async def on_accepted(self, job_id: str, ttl: float, lane: Lane = "async") -> None:
        """The provider took the request: count it as running, and increase additively."""
        if lane == "async":
            await self.app.backend.slot_acquire(self._accepted_key, job_id, 1_000_000, ttl)
        await self._update(
            self._limit_key(lane), lambda value: _increase(value, self.max_in_flight)
        )


def _cannot_use_slot(job: Job | None, lane: Lane) -> bool:
    if job is None or job.state in ENDED:
        return True
    if job.state is JobState.ACTIVE:
        return False  # its attempt runs (or its worker died: the reclaim decides)
    return lane == "sync" or not job.remote_job_id


def _increase(value: Any, maximum: int) -> Any:
    if not value:
        return None  # never rate limited: the configured maximum applies
    limit, ceiling = float(value["limit"]), int(value["ceiling"])
    streak = int(value.get("streak", 0)) + 1
    if streak >= ceiling and ceiling < maximum:
        ceiling, streak = ceiling + 1, 0
    limit = min(float(ceiling), limit + 1 / max(limit, 1.0))
    return {"limit": limit, "ceiling": ceiling, "streak": streak}


async def all_guard_states(app: App) -> list[dict[str, Any]]:
    """The guard state of every provider account workers have used on this backend."""
    return [await ProviderGuard(app, account).state() for account in await breakers.accounts(app)]


def backoff(attempt: int, base: float = 2.0, cap: float = 60.0) -> float:
    """Capped exponential backoff for a 429 without Retry-After."""
    return min(cap, base * math.pow(2, min(max(0, attempt - 1), 64)))


def release_jitter(delay: float) -> float:
    """Spread the wake-ups of jobs waiting for the same instant (no thundering herd)."""
    return delay + random.uniform(0.05, max(0.5, 0.25 * delay))
