"""The alert evaluator: one elected worker evaluates the rules, stores and notifies.

Every worker runs ``AlertEvaluator.run`` as a side task (``Worker(app, alerts=
evaluator.run)``). The workers compete for a leader lease in the backend, a slot set of
limit one (``slot_acquire("leader:alerts", worker_id, 1, lease)``) renewed every third of
the lease by a task of its own, so a slow delivery does not lose it. Only the holder
evaluates, every ``interval``; the others wait. A leader that stops releases the lease;
one that dies lets it expire, and another worker takes over within ``lease`` seconds,
from the state the last leader stored.

One round (``evaluate``): check every enabled rule at the backend's time; build the dead-
letter digests of the windows that closed; store the new alert state and its outbox with
one compare-and-set (see ``state.py``); then deliver the outbox and remove what was sent.
A rule that cannot be evaluated (storage hiccup) keeps its alert as it is until the next
round. Delivery goes through ``Notifications.dispatch``, which never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from genqueue.errors import StorageCorrupt
from genqueue.observability.alerts.rules import (
    AlertContext,
    BreakerSource,
    Check,
    Rule,
    Unavailable,
)
from genqueue.observability.alerts.settings import AlertSettings
from genqueue.observability.alerts.state import (
    STATE_KEY,
    AlertsState,
    Round,
    advance,
    decode_notification,
    read_state,
)
from genqueue.observability.notify.digest import collect_dead_letter_digests
from genqueue.observability.notify.model import DeliveryResult, Notification

if TYPE_CHECKING:
    from genqueue.app import App

log = logging.getLogger("genqueue.alerts")

LEADER_KEY = "leader:alerts"
#: After a long gap (no leader for days), one digest covers at most this much.
MAX_CATCH_UP = 24 * 3600.0


class Dispatcher(Protocol):
    """What the evaluator sends through (``Notifications`` in production)."""

    async def dispatch(self, notification: Notification) -> Sequence[DeliveryResult]: ...


@dataclass
class StepReport:
    """What one round did (for tests and logs)."""

    leader: bool
    checks: dict[str, Check] = field(default_factory=dict)
    #: Rules that failed to evaluate, with the exception's type.
    errors: dict[str, str] = field(default_factory=dict)
    sent: list[Notification] = field(default_factory=list)


class AlertEvaluator:
    def __init__(
        self,
        app: App,
        settings: AlertSettings | None = None,
        *,
        notifier: Dispatcher | None = None,
        breakers: BreakerSource | None = None,
        holder: str | None = None,
        owns_notifier: bool | None = None,
    ) -> None:
        """``notifier`` defaults to ``Notifications.for_app(app)``; the evaluator closes it
        when ``run`` ends if it built it or ``owns_notifier`` is true."""
        self.app = app
        self.settings = settings if settings is not None else AlertSettings()
        self.breakers = breakers
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._owns_notifier = notifier is None if owns_notifier is None else owns_notifier
        if notifier is None:
            from genqueue.observability.notify.dispatch import Notifications

            notifier = Notifications.for_app(app)
        self.notifier: Dispatcher = notifier
        #: Whether this evaluator held the lease at its last renewal.
        self.leader = False

    # -- the worker's side task --------------------------------------------------------------

    async def run(self, holder: str, stop: asyncio.Event) -> None:
        """Compete for the lease and evaluate while holding it, until ``stop`` is set.

        Never raises for a failed round (the worker would stop): it logs and goes on.
        """
        self.holder = holder
        await self.renew()
        keeper = asyncio.create_task(self._keep_lease(stop), name="genqueue-alerts-lease")
        try:
            while not stop.is_set():
                if self.leader:
                    try:
                        await self.evaluate()
                    except StorageCorrupt as exc:
                        # No traceback: damage is not a bug, and the worker stops on it too.
                        log.warning("alerts: not evaluated: %s", exc)
                    except Exception:
                        log.warning("alert evaluation failed; next round in %ss",
                                    self.settings.interval, exc_info=True)  # fmt: skip
                await _wait(stop, self.settings.interval)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.release()
            await self.aclose()

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, self.settings.lease / 3)
            if not stop.is_set():
                await self.renew()

    async def renew(self) -> bool:
        """Take or renew the leader lease; True if this evaluator holds it."""
        was = self.leader
        try:
            self.leader = await self.app.backend.slot_acquire(
                LEADER_KEY, self.holder, 1, self.settings.lease
            )
        except Exception as exc:
            self.leader = False
            if was and not isinstance(exc, StorageCorrupt):
                log.warning("alerts: could not renew the leader lease: %s: %s",
                            type(exc).__name__, exc)  # fmt: skip
        if self.leader != was:
            log.info(
                "alerts: %s %s the evaluator", self.holder, "is" if self.leader else "is no longer"
            )
        return self.leader

    async def release(self) -> None:
        if not self.leader:
            return
        self.leader = False
        with contextlib.suppress(Exception):  # it expires anyway
            await self.app.backend.slot_release(LEADER_KEY, self.holder)

    async def aclose(self) -> None:
        closer = getattr(self.notifier, "aclose", None)
        if self._owns_notifier and closer is not None:
            await closer()

    # -- one round ---------------------------------------------------------------------------

    async def step(self) -> StepReport:
        """One round as ``run`` does it: renew the lease, and evaluate if held."""
        if not await self.renew():
            return StepReport(leader=False)
        return await self.evaluate()

    async def evaluate(self) -> StepReport:
        """Check the rules, store the outcome, deliver the outbox (the caller leads)."""
        now = await self.app.backend.time()
        report = StepReport(leader=True)
        checks = await self._check_all(now, report)
        settings = self.settings
        round_ = Round(
            now=now,
            evaluator=self.holder,
            checks=checks,
            disabled=frozenset(r.name for r in settings.rules if not r.enabled),
            repeat_every={r.name: settings.repeat_for(r) for r in settings.rules},
            history=settings.history,
            link=settings.link,
        )
        await self._store(round_)
        report.sent = await self.deliver()
        return report

    async def _check_all(self, now: float, report: StepReport) -> dict[str, tuple[Rule, Check]]:
        ctx = AlertContext(self.app, now, self.breakers)
        out: dict[str, tuple[Rule, Check]] = {}
        for rule in self.settings.active_rules:
            try:
                check = await rule.check(ctx)
            except Unavailable:
                continue
            except StorageCorrupt:
                raise  # not a hiccup: the worker stops
            except Exception as exc:
                log.warning("alert rule %s could not be evaluated", rule.name, exc_info=True)
                report.errors[rule.name] = type(exc).__name__
                continue
            out[rule.name] = (rule, check)
            report.checks[rule.name] = check
        return out

    async def _store(self, round_: Round) -> bool:
        """Advance the stored state by compare-and-set; on a conflict, from the winner's."""
        for _ in range(10):
            state, version = await read_state(self.app.backend)
            advance(state, round_)
            await self._digests(state, round_.now)
            stored = await self.app.backend.state_put(
                STATE_KEY, state.to_json(), expect_version=version
            )
            if stored is not None:
                return True
        log.warning("alerts: could not store the alert state (another writer kept winning)")
        return False

    async def _digests(self, state: AlertsState, now: float) -> None:
        """Queue the digests of the windows that closed since the last one."""
        digests = self.settings.digests
        if not digests.enabled:
            return
        end = math.floor((now - digests.grace) / digests.window) * digests.window
        if state.digests_until is None or state.digests_until > end:
            state.digests_until = end  # start now: earlier dead letters are not a digest
            return
        if end <= state.digests_until:
            return
        since = max(state.digests_until, end - MAX_CATCH_UP)
        found = await collect_dead_letter_digests(
            self.app.dlq,
            since=since,
            until=end,
            top=digests.top,
            severity=digests.severity,
            link=self.settings.link,
        )
        state.digests_until = end
        state.queue(found)

    async def deliver(self) -> list[Notification]:
        """Send what the outbox holds, then remove it from the outbox."""
        state, _ = await read_state(self.app.backend)
        sent: list[Notification] = []
        done: set[str] = set()
        for raw in state.outbox:
            done.add(str(raw.get("id")))
            try:
                notification = decode_notification(raw)
            except Exception:
                log.warning("alerts: dropped a malformed notification %s", raw.get("id"))
                continue
            try:
                await self.notifier.dispatch(notification)
            except Exception:  # Notifications never raises; another dispatcher might
                log.exception("alerts: delivering notification %s failed", notification.id)
            sent.append(notification)
        if done:
            await self._clear(done)
        return sent

    async def _clear(self, ids: set[str]) -> None:
        for _ in range(10):
            state, version = await read_state(self.app.backend)
            kept = [n for n in state.outbox if str(n.get("id")) not in ids]
            if len(kept) == len(state.outbox):
                return
            state.outbox = kept
            if await self.app.backend.state_put(STATE_KEY, state.to_json(), expect_version=version):
                return
        log.warning("alerts: could not clear the outbox; its notifications may be sent again")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
