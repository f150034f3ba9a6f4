"""The submit ledger kept in the backend's shared state (``Reconciler``), on every backend."""

from __future__ import annotations

from genqueue import App, FakeClock
from genqueue.providers.ledger import LedgerSettings, Verdict
from genqueue.providers.reconcile import Reconciler

PRICE = {"usd": 0.05, "generations": 5.0}
SETTINGS = LedgerSettings(settlement_lag=1.0, reconcile_after=2.0)


class Account:
    """A provider account's balance, as the reconciler reads it."""

    def __init__(self) -> None:
        self.balance = {"usd": 100.0, "generations": 1000.0}

    def charge(self, cost: dict[str, float]) -> None:
        for unit, amount in cost.items():
            self.balance[unit] = round(self.balance[unit] - amount, 9)

    async def read(self) -> dict[str, float]:
        return dict(self.balance)


async def test_an_accepted_submit_whose_job_ended_unpriced_does_not_hold_verdicts_back(
    app: App, clock: FakeClock
) -> None:
    # Seen in the chaos test: an async job accepted (priced only when its remote job ends)
    # was killed while polling until it was dead-lettered as worker_lost; its window kept
    # waiting for the price, and the uncertain submits of that window snoozed for an hour.
    @app.task("gen")
    async def gen(ctx):  # type: ignore[no-untyped-def]
        return None

    account = Account()
    ledger = Reconciler(app, "acct", account.read, SETTINGS)
    assert await ledger.begin("old:1", 10) is not None  # a first reading is taken first
    assert await ledger.begin("old:1", 10) is None
    await ledger.end("old:1", "accepted", "op")
    await ledger.settle("old:1", "op", PRICE)  # the operation's price is known
    account.charge(PRICE)
    job = await app.enqueue("gen", {})
    submit_id = f"{job.id}:1"
    assert await ledger.begin(submit_id, 10) is None
    await ledger.end(submit_id, "accepted", "op")  # its price comes when the job ends
    account.charge(PRICE)
    assert await ledger.begin("lost:1", 10) is None
    await ledger.end("lost:1", "uncertain", "op")  # not charged
    clock.advance(5)
    assert isinstance(await ledger.verdict("lost:1"), float)  # the job may still price it
    assert isinstance(await ledger.verdict("lost:1"), float)
    await app.cancel(job.id)  # it ended without pricing its submit: it never will
    found = await ledger.verdict("lost:1")
    assert isinstance(found, Verdict) and found.verdict == "clear"
    summary = await ledger.summary()
    assert summary["unexplained"] == PRICE  # charged, on no job
    assert summary["undecided"] == 0
