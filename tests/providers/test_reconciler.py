"""The submit ledger kept in the backend's shared state (``Reconciler``), on every backend."""

from __future__ import annotations

from tests.conftest import drain

from genqueue import App, FakeClock, JobState
from genqueue.providers.ledger import LedgerSettings, Verdict
from genqueue.providers.reconcile import LOOK_AT_JOBS_EVERY, MAX_LOOKUPS, Reconciler

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
    clock.advance(LOOK_AT_JOBS_EVERY)  # the ledger looks the jobs up at most this often
    found = await ledger.verdict("lost:1")
    assert isinstance(found, Verdict) and found.verdict == "clear"
    summary = await ledger.summary()
    assert summary["unexplained"] == PRICE  # charged, on no job
    assert summary["undecided"] == 0


async def test_a_dead_job_that_stored_its_acceptance_proves_it(app: App, clock: FakeClock) -> None:
    # A sync submit accepted and charged, the charge stored on the job, its worker killed
    # before telling the ledger, and the job dead-lettered by that kill (no attempt left to
    # tell it): its request must not expire into "uncertain" and be counted again.
    account = Account()
    ledger = Reconciler(app, "acct", account.read, SETTINGS)
    assert await ledger.begin("first:1", 10) is not None  # a first reading

    @app.task("charged", max_retries=0)
    async def charged(ctx):  # type: ignore[no-untyped-def]
        assert await ledger.begin(f"{ctx.id}:1", 10) is None
        account.charge(PRICE)
        await ctx.set_meta(accepted=f"{ctx.id}:1", accepted_cost=PRICE)
        raise SystemExit("killed")  # stands for the kill: the ledger never hears of it

    job = await app.enqueue("charged", {})
    await drain(app)
    assert (await app.get(job.id)).state is JobState.DEAD
    assert await ledger.begin("lost:1", 10) is None
    await ledger.end("lost:1", "uncertain", "op")  # not charged
    clock.advance(5)  # before the dead job's request would expire (10 s + grace)
    found = await ledger.verdict("lost:1")
    assert isinstance(found, float)  # a reading is due: the dead job's request is settled
    clock.advance(5)
    found = await ledger.verdict("lost:1")
    assert isinstance(found, Verdict) and found.verdict == "clear", found
    summary = await ledger.summary()
    assert summary["unexplained"] == {} and summary["in_flight"] == 0


async def test_the_jobs_are_looked_up_a_bounded_number_at_a_time_and_all_in_turn(
    app: App, clock: FakeClock
) -> None:
    account = Account()
    ledger = Reconciler(app, "acct", account.read, SETTINGS)
    assert await ledger.begin("first:1", 10) is not None  # a first reading

    @app.task("charged", max_retries=0)
    async def charged(ctx):  # type: ignore[no-untyped-def]
        await ctx.set_meta(accepted=f"{ctx.id}:1", accepted_cost=PRICE)
        raise SystemExit("killed")  # the ledger never hears of it

    dead = await app.enqueue("charged", {})
    await drain(app)
    running = [await app.enqueue("charged", {}) for _ in range(MAX_LOOKUPS + 20)]
    assert len(await app.backend.fetch(["default"], "w", 1000, 300)) == len(running)
    for job in [*running, dead]:  # the dead job's request is the last one tracked
        assert await ledger.begin(f"{job.id}:1", 600) is None
    rounds = 0
    while (await ledger.summary())["in_flight"] > len(running):
        rounds += 1
        assert rounds <= 2, "the dead job's request was never looked at"
        clock.advance(LOOK_AT_JOBS_EVERY)
        await ledger.advance()
    assert rounds == 2  # not within the first round's bound, but in the next
