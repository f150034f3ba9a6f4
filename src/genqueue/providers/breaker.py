"""The circuit breaker of a provider account: its states, and how a failure or success moves it.

``closed``: calls go through; failures are counted within a window. Auth or payment
errors, or ``failure_threshold`` server errors/timeouts in a row, make it ``open`` for a
cooldown. Then one job is let through as the *probe* (``half_open``): its success closes
the breaker, its failure reopens it for twice as long (up to ``max_cooldown``).

Only the probe moves a breaker that is not closed. Requests already in flight when it
opened fail too (every one of them, with a revoked key), and counting each of those as a
failed probe would double the cooldown to its cap within a second; they are absorbed.

The state is plain JSON kept in the backend's shared state by ``ProviderGuard``; this
module is pure. ``list_breakers`` and ``reset_breaker`` are the operator's view (``genqueue
breaker list|reset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from genqueue.errors import InvalidInput, NotFound
from genqueue.events import EventName

if TYPE_CHECKING:
    from genqueue.app import App

ACCOUNTS_KEY = "provider-accounts"
Change = Literal["opened", "closed", "probe_failed"]


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


def breaker_key(account: str) -> str:
    return f"breaker:{account}"


def admit(value: Any, job_id: str, now: float, settings: BreakerSettings) -> tuple[Gate, Any]:
    """(gate, new state or None) for a job asking to pass the breaker."""
    state = (value or {}).get("state", "closed")
    if state == "closed":
        return Gate(True), None
    until = float(value.get("until", 0))
    if state == "open" and now < until:
        return Gate(False, until - now, f"circuit open ({value.get('reason', '')})"), None
    probe, probe_until = value.get("probe"), float(value.get("probe_until", 0))
    if state == "half_open" and probe == job_id:
        return Gate(True, probe=True), None
    if state == "half_open" and now < probe_until:
        wait = min(5.0, probe_until - now)
        return Gate(False, wait, "circuit half-open: waiting for the probe"), None
    new = {
        **value,
        "state": "half_open",
        "probe": job_id,
        "probe_until": now + settings.probe_timeout,
    }
    return Gate(True, probe=True), new


def failure(
    value: Any, job_id: str, now: float, *, immediate: bool, reason: str, settings: BreakerSettings
) -> tuple[Any, Change | None]:
    """(new state or None, what changed) after ``job_id`` failed with a breaker-worthy error."""
    value = value or {}
    state = value.get("state", "closed")
    if state == "half_open" and value.get("probe") == job_id:
        cooldown = min(settings.max_cooldown, float(value.get("cooldown", settings.cooldown)) * 2)
        new = {key: val for key, val in value.items() if key not in ("probe", "probe_until")}
        return {**new, "state": "open", "until": now + cooldown, "cooldown": cooldown}, (
            "probe_failed"
        )
    if state != "closed":
        return None, None  # in flight when it opened, or not the probe: absorbed
    started = float(value.get("window_start", now))
    failures = int(value.get("failures", 0)) + 1 if now - started <= settings.window else 1
    if immediate or failures >= settings.failure_threshold:
        cooldown = settings.auth_cooldown if immediate else settings.cooldown
        why = reason if immediate else f"{failures} {reason} errors in a row"
        opened = {"state": "open", "until": now + cooldown, "cooldown": cooldown,
                  "reason": why, "kind": reason, "opened_at": now}  # fmt: skip
        return opened, "opened"
    return {"state": "closed", "failures": failures,
            "window_start": started if failures > 1 else now}, None  # fmt: skip


def success(value: Any, job_id: str) -> tuple[Any, Change | None]:
    """(new state or None, what changed) after ``job_id`` got through."""
    value = value or {}
    state = value.get("state", "closed")
    if state == "closed":
        return ({"state": "closed"}, None) if value.get("failures") else (None, None)
    if state == "half_open" and value.get("probe") == job_id:
        return {"state": "closed"}, "closed"
    return None, None


def remaining(value: Any, now: float) -> float:
    """How long an open breaker stays open (0 if it is not open)."""
    if not value or value.get("state") != "open":
        return 0.0
    return max(0.0, float(value.get("until", 0)) - now)


def describe(account: str, value: Any, now: float) -> dict[str, Any]:
    """One breaker as shown by ``genqueue breaker list`` and ``stats``."""
    value = value or {}
    state = value.get("state", "closed")
    return {
        "account": account,
        "state": state,
        "reason": value.get("reason") if state != "closed" else None,
        "open_for": round(remaining(value, now), 3),
        "cooldown": value.get("cooldown") if state != "closed" else None,
        "probe": value.get("probe") if state == "half_open" else None,
        "failures": int(value.get("failures", 0)),
    }


async def accounts(app: App) -> list[str]:
    """Every provider account workers have used on this backend."""
    found = await app.backend.state_get(ACCOUNTS_KEY)
    return list(found[0]) if found else []


async def list_breakers(app: App) -> list[dict[str, Any]]:
    """The breaker of every provider account workers have used on this backend."""
    now = await app.backend.time()
    out = []
    for account in await accounts(app):
        found = await app.backend.state_get(breaker_key(account))
        out.append(describe(account, found[0] if found else None, now))
    return out


async def no_breaker_open(app: App) -> bool:
    """True when every provider account's breaker is closed (auto-redrive waits for it)."""
    return all(b["state"] == "closed" for b in await list_breakers(app))


async def reset_breaker(app: App, account: str | None = None) -> list[str]:
    """Close the breaker of ``account`` (a unique prefix will do), or of every account.

    Returns the accounts whose breaker was open or half-open. Raises ``NotFound`` when no
    known account matches.
    """
    known = await accounts(app)
    chosen = known if account is None else [a for a in known if a.startswith(account)]
    if account is not None and not chosen:
        raise NotFound(f"no provider account matches {account!r} (see `genqueue breaker list`)")
    if account is not None and len(chosen) > 1 and account not in chosen:
        raise InvalidInput(f"{account!r} matches {len(chosen)} accounts; give more of it")
    chosen = [account] if account in chosen else chosen
    was_open = []
    for name in chosen:
        key = breaker_key(name)
        for _ in range(20):
            found = await app.backend.state_get(key)
            if not found or found[0].get("state", "closed") == "closed":
                break
            if await app.backend.state_put(key, {"state": "closed"}, expect_version=found[1]):
                was_open.append(name)
                app.events.emit(EventName.CIRCUIT_CLOSED, provider=name, reason="reset")
                break
    return was_open
