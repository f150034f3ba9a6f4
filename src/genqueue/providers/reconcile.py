"""The submit ledger of a provider account, kept in the backend's shared state.

``Reconciler`` wraps the pure functions of ``genqueue.providers.ledger`` in
compare-and-set updates of one shared record per account, so every worker process of
every machine sees the same windows, barrier and verdicts. A submit calls ``begin``
before the request goes out and ``end`` when it knows how it went (and ``settle`` once
an accepted job's price is known). A job whose submit is uncertain calls ``verdict``
until the account's balance decides it; any such call (and any submit held back by the
barrier) moves the reconciliation on by taking a clean reading when one can be taken.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from genqueue.app import App
from genqueue.job import JobState
from genqueue.providers import ledger
from genqueue.providers.ledger import Amounts, LedgerSettings, Outcome, Record, Verdict

log = logging.getLogger("genqueue.providers")

CAS_TRIES = 50
#: How often one process looks up the jobs of the submits the ledger tracks (seconds).
LOOK_AT_JOBS_EVERY = 1.0
MAX_LOOKUPS = 100
#: A job proves its submit was accepted by storing, before anything else, ``ACCEPTED``
#: (the submit id) and ``ACCEPTED_COST`` (what it was charged, if known) in its meta.
ACCEPTED, ACCEPTED_COST = "accepted", "accepted_cost"
ENDED = (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED)
BalanceReader = Callable[[], Awaitable[Amounts]]


@dataclass(frozen=True)
class Wait:
    """A submit may not go out yet: wait ``delay`` seconds (and why)."""

    delay: float
    reason: str


class Reconciler:
    def __init__(
        self,
        app: App,
        account: str,
        read_balance: BalanceReader,
        settings: LedgerSettings | None = None,
    ) -> None:
        self.app = app
        self.account = account
        self.settings = settings or LedgerSettings()
        self._read_balance = read_balance
        self.key = ledger.ledger_key(account)
        self._next_look_at_jobs = 0.0
        self._lookups = 0

    async def _load(self) -> tuple[Record, int]:
        found = await self.app.backend.state_get(self.key)
        return (found[0], found[1]) if found else (ledger.new_record(), 0)

    async def _change(self, change: Callable[[Record, float], Record | None]) -> Record:
        """Compare-and-set the record with ``change(record, now)``; None means unchanged."""
        backend = self.app.backend
        for _ in range(CAS_TRIES):
            record, version = await self._load()
            now = await backend.time()
            record = ledger.expire(record, now)
            new = change(record, now)
            if new is None:
                return record
            if await backend.state_put(self.key, new, expect_version=version) is not None:
                return new
        raise RuntimeError(f"the submit ledger {self.key} is too contended")

    # -- submits -----------------------------------------------------------------------

    async def begin(self, submit_id: str, timeout: float) -> Wait | None:
        """Record a submit about to go out, or say why it must wait."""
        held: list[str] = []

        def step(record: Record, now: float) -> Record | None:
            held.clear()
            reason = ledger.blocked(record, now, self.settings)
            if reason is not None:
                held.append(reason)
                return None
            expires = now + timeout + self.settings.inflight_grace
            return ledger.begin(record, submit_id, now, expires)

        await self._change(step)
        if not held:
            return None
        delay = await self.advance()
        return Wait(delay, held[0])

    async def end(
        self, submit_id: str, outcome: Outcome, operation: str, cost: Amounts | None = None
    ) -> None:
        """How a submit ended; an accepted one's ``cost`` may come later (``settle``)."""

        def change(record: Record, now: float) -> Record:
            return ledger.end(
                record, submit_id, now, outcome=outcome, cost=cost, operation=operation
            )

        await self._change(change)

    async def settle(self, submit_id: str, operation: str, cost: Amounts | None) -> None:
        """An accepted job's price, once known (None: it never will be)."""
        await self._change(
            lambda record, now: ledger.settle(record, submit_id, cost, operation, now)
        )

    async def forget(self, submit_id: str) -> None:
        await self._change(lambda record, now: ledger.forget(record, submit_id))

    async def count_blind_resubmit(self) -> None:
        await self._change(lambda record, now: ledger.count_blind_resubmit(record))

    # -- verdicts ----------------------------------------------------------------------

    async def verdict(self, submit_id: str) -> Verdict | float:
        """The verdict on an uncertain submit, or how long to wait before asking again."""
        record, _ = await self._load()
        where = ledger.track(record, submit_id)
        if where == "unknown":
            # A record of it was lost (storage reset): it cannot be proven either way.
            why = "the submit ledger has no record of it"
            return Verdict(submit_id, "charged", why, {})
        if where != "verdict":
            delay = await self.advance()
            record, _ = await self._load()
        found = ledger.verdict(record, submit_id)
        return found if found is not None else delay

    async def tend(self) -> None:
        """Move the reconciliation on if anything is left to decide. Jobs waiting for a
        verdict and submits held by the barrier do this themselves; but a submit whose job
        ended without waiting (cancelled, or dead-lettered by lost workers) would otherwise
        stay undecided, and spend short of what the account was charged, until the
        account's next submit. Every worker calls this periodically (``App.periodic``)."""
        record, _ = await self._load()
        if ledger.unsettled(record):
            await self.advance()

    async def advance(self) -> float:
        """Move the reconciliation on; return a sensible wait before looking again."""
        settings = self.settings
        if self.app.clock.now() >= self._next_look_at_jobs:
            # Before the barrier: a request whose job ended holds every reading back.
            self._next_look_at_jobs = self.app.clock.now() + LOOK_AT_JOBS_EVERY
            await self._settle_ended_jobs()

        def barrier(record: Record, now: float) -> Record | None:
            if not ledger.wanted(record, now, settings):
                return None
            return ledger.raise_barrier(record, now)

        record = await self._change(barrier)
        now = await self.app.backend.time()
        if record["barrier"] is None:
            await self._evaluate()
            return max(1.0, min(settings.reconcile_after, settings.settlement_lag) / 2)
        quiet = ledger.quiet_in(record, now, settings)
        if quiet is None or quiet > 0:
            return max(0.2, quiet if quiet is not None else min(5.0, settings.settlement_lag))
        await self._take_reading(record["seq"])
        await self._evaluate()
        return 0.2

    async def _take_reading(self, seq: int) -> None:
        try:
            reading = await self._read_balance()
        except Exception as exc:
            log.warning("reading the balance of %s failed: %s", self.account, exc)
            await self._change(lambda record, now: ledger.read_failed(record, now, self.settings))
            return

        def close(record: Record, now: float) -> Record | None:
            return ledger.close(record, reading, now, seq)

        await self._change(close)

    async def _settle_ended_jobs(self) -> None:
        """What only the jobs could tell, once they ended without telling it: an accepted
        submit's price never comes (see ``ledger.abandon``); a job that stored the
        acceptance of its submit (``ACCEPTED``) but whose worker died before the ledger
        heard of it, with no attempt left to say so, proves it was accepted (else its
        charge, on the job, would count again as unexplained)."""
        record, _ = await self._load()
        # Bounded per round: thousands of requests in flight are thousands of running
        # jobs; the next rounds go on where this one stopped.
        tracked = [*ledger.awaiting_price(record), *ledger.unproven(record)]
        if len(tracked) > MAX_LOOKUPS:
            start = self._lookups % len(tracked)
            tracked = (tracked + tracked)[start : start + MAX_LOOKUPS]
            self._lookups += MAX_LOOKUPS
        for submit_id in tracked:
            job = await self.app.backend.get(submit_id.rsplit(":", 1)[0])
            if job is not None and job.state not in ENDED:
                continue  # it settles this itself, later
            if job is not None and job.meta.get(ACCEPTED) == submit_id:
                cost = job.meta.get(ACCEPTED_COST) or None
                await self._change(functools.partial(_proven, submit_id=submit_id, cost=cost))
            elif submit_id in ledger.awaiting_price(record):
                # A completed job carries its cost; only the ledger missed its price.
                on_job = job is not None and job.state is JobState.COMPLETED
                await self._change(functools.partial(_abandon, submit_id=submit_id, on_job=on_job))

    async def _evaluate(self) -> None:
        decided: list[Verdict] = []

        def evaluate(record: Record, now: float) -> Record | None:
            decided.clear()
            new, found = ledger.evaluate(record, now, self.settings)
            decided.extend(found)
            return new if found or new["closed"] != record["closed"] else None

        await self._change(evaluate)
        for found in decided:
            log.info(
                "uncertain submit of job %s: %s (%s)", found.submit_id, found.verdict, found.why
            )

    async def summary(self) -> dict[str, Any]:
        record, _ = await self._load()
        return ledger.summary(record)


def _proven(record: Record, now: float, *, submit_id: str, cost: Amounts | None) -> Record:
    return ledger.end(record, submit_id, now, outcome="accepted", cost=cost, operation="")


def _abandon(record: Record, now: float, *, submit_id: str, on_job: bool) -> Record:
    return ledger.abandon(record, submit_id, now, on_job=on_job)
