"""Guards shared by every worker that calls one provider account: cooldown, breaker, limit.

All three live in the backend's shared state (``Backend.state_*`` and ``slot_*``), so a
lesson learned by one worker process holds for all of them, on any backend:

* **Cooldown**: after a 429/529 nobody calls the account until ``Retry-After`` (or a
  capped backoff) has passed.
* **Circuit breaker**: auth or payment errors, or a burst of server errors/timeouts,
  open it; jobs then wait instead of failing into the DLQ. After a cooldown one probe job
  is let through; its success closes the breaker, its failure reopens it for longer.
* **Concurrency limit** (async endpoints): at most ``limit`` jobs in flight per account,
  learned AIMD-style. A 429 halves the limit and sets a ceiling at the number of jobs the
  provider had accepted and was still running; each accepted job adds ``1/limit`` back, up
  to the ceiling; a run of ``ceiling`` acceptances without a 429 raises the ceiling by one
  (probing, in case the account's limit grew).

Keys hold a hash of the API key, never the key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from genqueue.app import App
from genqueue.events import EventName

CAS_TRIES = 20
ACCOUNTS_KEY = "provider-accounts"


def account_id(provider: str, api_key: str) -> str:
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:12]
    return f"{provider}:{digest}"


@dataclass(frozen=True)
class BreakerSettings:
    #: Consecutive server errors/timeouts (within ``window``) that open the breaker.
    failure_threshold: int = 5
    window: float = 60.0
    #: First open period; doubles on every failed probe, up to ``max_cooldown``.
    cooldown: float = 15.0
    auth_cooldown: float = 30.0
    max_cooldown: float = 600.0
    #: A probe that has not reported back after this long frees the way for another.
    probe_timeout: float = 120.0


@dataclass(frozen=True)
class Gate:
    """What a job may do now: go, or wait ``delay`` seconds (and why)."""

    go: bool
    delay: float = 0.0
    reason: str = ""
    probe: bool = False


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
        self._breaker_key = f"breaker:{account}"
        self._limit_key = f"limit:{account}"
        self._slots_key = f"inflight:{account}"
        self._accepted_key = f"accepted:{account}"
        self._registered = False

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

    async def start_cooldown(self, seconds: float, reason: str) -> None:
        until = await self._now() + seconds

        def extend(value: Any) -> Any:
            if value and float(value["until"]) >= until:
                return None
            return {"until": until, "reason": reason}

        await self._update(self._cooldown_key, extend, ttl=seconds + 1)

    # -- circuit breaker ------------------------------------------------------------------------

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
            gate, new = _breaker_step(value, job_id, now, self.breaker)
            decided["gate"] = gate
            return new

        await self._update(self._breaker_key, step)
        return decided["gate"]

    async def record_success(self, job_id: str) -> None:
        closed = False

        def step(value: Any) -> Any:
            nonlocal closed
            if not value or (value.get("state") == "closed" and not value.get("failures")):
                return None
            closed = value.get("state") != "closed"
            return {"state": "closed", "failures": 0}

        await self._update(self._breaker_key, step)
        if closed:
            self.app.events.emit(EventName.CIRCUIT_CLOSED, provider=self.account, job_id=job_id)

    async def record_failure(self, job_id: str, kind: str, *, immediate: bool) -> float:
        """Count a failure; return how long the breaker is open for (0 if it stays closed)."""
        now = await self._now()
        opened: dict[str, float] = {}

        def step(value: Any) -> Any:
            new = _breaker_failure(value or {}, now, immediate, self.breaker)
            if new.get("state") == "open" and (value or {}).get("state") != "open":
                opened["until"] = float(new["until"])
            return new

        await self._update(self._breaker_key, step)
        if "until" in opened:
            self.app.events.emit(
                EventName.CIRCUIT_OPENED,
                provider=self.account,
                job_id=job_id,
                reason=kind,
                delay=round(opened["until"] - now, 3),
            )
            return opened["until"] - now
        return 0.0

    async def state(self) -> dict[str, Any]:
        """The breaker, cooldown and limit of this account, for ``genqueue stats``."""
        backend = self.app.backend
        breaker = await backend.state_get(self._breaker_key)
        limit = await backend.state_get(self._limit_key)
        return {
            "account": self.account,
            "breaker": breaker[0] if breaker else {"state": "closed"},
            "cooldown_remaining": round(await self.cooldown_remaining(), 3),
            "in_flight": await backend.slot_count(self._slots_key),
            "in_flight_limit": (limit[0] if limit else {}).get("limit", self.max_in_flight),
        }

    # -- concurrency limit (AIMD) -----------------------------------------------------------------

    async def acquire_slot(self, job_id: str, ttl: float) -> bool:
        found = await self.app.backend.state_get(self._limit_key)
        limit = int(found[0]["limit"]) if found else self.max_in_flight
        return await self.app.backend.slot_acquire(self._slots_key, job_id, max(1, limit), ttl)

    async def hold_slot(self, job_id: str, ttl: float) -> None:
        """Take or renew a slot whatever the limit: the job already runs at the provider."""
        await self.app.backend.slot_acquire(self._slots_key, job_id, 1_000_000, ttl)

    async def release_slot(self, job_id: str) -> None:
        await self.app.backend.slot_release(self._slots_key, job_id)
        await self.app.backend.slot_release(self._accepted_key, job_id)

    async def on_rate_limited(self) -> None:
        """Multiplicative decrease; the ceiling is what the provider was running for us."""
        running = await self.app.backend.slot_count(self._accepted_key)

        def decrease(value: Any) -> Any:
            current = float((value or {}).get("limit", self.max_in_flight))
            ceiling = max(1, min(self.max_in_flight, running))
            return {"limit": max(1.0, min(current / 2, ceiling)), "ceiling": ceiling, "streak": 0}

        await self._update(self._limit_key, decrease)

    async def on_accepted(self, job_id: str, ttl: float) -> None:
        """The provider took the job: count it as running, and increase additively."""
        await self.app.backend.slot_acquire(self._accepted_key, job_id, 1_000_000, ttl)
        await self._update(self._limit_key, lambda value: _increase(value, self.max_in_flight))


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
    found = await app.backend.state_get(ACCOUNTS_KEY)
    return [await ProviderGuard(app, account).state() for account in (found[0] if found else [])]


def _breaker_step(
    value: Any, job_id: str, now: float, settings: BreakerSettings
) -> tuple[Gate, Any]:
    """(gate, new state or None) for a job asking to pass the breaker."""
    state = (value or {}).get("state", "closed")
    if state == "closed":
        return Gate(True), None
    until = float(value.get("until", 0))
    if state == "open" and now < until:
        return Gate(False, until - now, f"circuit open ({value.get('reason', '')})"), None
    probe, probe_until = value.get("probe"), float(value.get("probe_until", 0))
    if state == "half_open" and probe != job_id and now < probe_until:
        return Gate(
            False, min(5.0, probe_until - now), "circuit half-open: waiting for the probe"
        ), None
    new = {
        **value,
        "state": "half_open",
        "probe": job_id,
        "probe_until": now + settings.probe_timeout,
    }
    return Gate(True, probe=True), new


def _breaker_failure(
    value: dict[str, Any], now: float, immediate: bool, settings: BreakerSettings
) -> dict[str, Any]:
    state = value.get("state", "closed")
    if state == "half_open" or (state == "open" and immediate):
        previous = float(value.get("cooldown", settings.cooldown))
        cooldown = min(settings.max_cooldown, previous * 2)
        return {
            "state": "open",
            "until": now + cooldown,
            "cooldown": cooldown,
            "reason": value.get("reason", ""),
        }
    if state == "open":
        return value
    started = float(value.get("window_start", now))
    failures = int(value.get("failures", 0)) + 1 if now - started <= settings.window else 1
    if immediate or failures >= settings.failure_threshold:
        cooldown = settings.auth_cooldown if immediate else settings.cooldown
        reason = "auth/payment error" if immediate else f"{failures} server errors or timeouts"
        return {"state": "open", "until": now + cooldown, "cooldown": cooldown, "reason": reason}
    return {
        "state": "closed",
        "failures": failures,
        "window_start": started if failures > 1 else now,
    }


def backoff(attempt: int, base: float = 2.0, cap: float = 60.0) -> float:
    """Capped exponential backoff for a 429 without Retry-After."""
    return min(cap, base * math.pow(2, max(0, attempt - 1)))
