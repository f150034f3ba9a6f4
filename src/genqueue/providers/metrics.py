"""Provider gauges for ``genqueue.observability.metrics``: breakers, limits, the ledger.

Read from the shared state every worker writes, so any process reports the same values.
The ``provider`` label is the account id (a hash of the key), never the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genqueue.observability.metrics import Reading, reading
from genqueue.providers.guard import all_guard_states

if TYPE_CHECKING:
    from genqueue.app import App

BREAKER_STATES = ("closed", "half_open", "open")


async def provider_readings(app: App) -> list[Reading]:
    out: list[Reading] = []
    for guard in await all_guard_states(app):
        account = str(guard["account"])
        state = guard["breaker"]["state"]
        for name in BREAKER_STATES:
            out.append(
                reading(
                    "provider_circuit_state",
                    "1 for the state the account's circuit breaker is in.",
                    1.0 if state == name else 0.0,
                    provider=account,
                    state=name,
                )
            )
        out.append(
            reading(
                "provider_cooldown_seconds",
                "Seconds left of the account's shared rate-limit cooldown.",
                float(guard["cooldown_remaining"]),
                provider=account,
            )
        )
        for lane, info in guard["lanes"].items():
            out.append(
                reading(
                    "provider_in_flight_limit",
                    "Adaptive limit of requests in flight (lowered on 429, raised on success).",
                    float(info["limit"]),
                    provider=account,
                    lane=lane,
                )
            )
            out.append(
                reading(
                    "provider_in_flight",
                    "Requests in flight.",
                    float(info["in_flight"]),
                    provider=account,
                    lane=lane,
                )
            )
        ledger = guard.get("ledger") or {}
        out.append(
            reading(
                "provider_uncertain_submits",
                "Submits that may have been charged, waiting for the balance to decide.",
                float(ledger.get("undecided", 0)),
                provider=account,
            )
        )
    return out
