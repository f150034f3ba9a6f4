"""The submit ledger's arithmetic: windows between clean readings decide uncertain submits."""

from __future__ import annotations

from genqueue.providers import ledger
from genqueue.providers.ledger import LedgerSettings, Record

SETTINGS = LedgerSettings(settlement_lag=10.0, reconcile_after=30.0, give_up_after=600.0)
PRICE = {"usd": 0.05, "generations": 5.0}


def opened(balance: float = 100.0, generations: float = 1000.0, at: float = 0.0) -> Record:
    """A ledger whose first clean reading was taken at ``at``."""
    rec = ledger.new_record()
    assert ledger.blocked(rec, 0, SETTINGS) is not None  # no submit before a first reading
    new = ledger.close(rec, {"usd": balance, "generations": generations}, at, rec["seq"])
    assert new is not None and ledger.blocked(new, at, SETTINGS) is None
    return new


def submit(rec: Record, job: str, at: float, outcome: str, cost: dict | None = None) -> Record:
    rec = ledger.begin(rec, job, at, at + 60)
    return ledger.end(rec, job, at + 1, outcome=outcome, cost=cost, operation="op")  # type: ignore[arg-type]


def reading(rec: Record, usd: float, generations: float, at: float) -> Record:
    """Raise the barrier, wait until quiet, read, close, evaluate."""
    rec = ledger.raise_barrier(rec, at)
    assert ledger.blocked(rec, at, SETTINGS) is not None
    assert ledger.quiet_in(rec, at, SETTINGS) == 0.0
    closed = ledger.close(rec, {"usd": usd, "generations": generations}, at, rec["seq"])
    assert closed is not None and ledger.blocked(closed, at, SETTINGS) is None
    decided, _ = ledger.evaluate(closed, at, SETTINGS)
    return decided


def test_an_uncertain_submit_the_balance_does_not_show_is_cleared() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "accepted", PRICE)
    rec = submit(rec, "b:1", 2, "uncertain")
    assert ledger.track(rec, "b:1") == "waiting"
    rec = reading(rec, 100 - 0.05, 1000 - 5, at=20)  # only a:1's charge
    verdict = ledger.verdict(rec, "b:1")
    assert verdict is not None and verdict.verdict == "clear" and verdict.cost == {}
    assert rec["totals"]["cleared"] == 1 and rec["totals"]["charged"] == 0


def test_an_unexplained_charge_marks_the_uncertain_submits_maybe_charged_and_shares_it() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "uncertain")
    rec = submit(rec, "b:1", 2, "uncertain")
    rec = submit(rec, "c:1", 3, "accepted", PRICE)
    rec = reading(rec, 100 - 0.10, 1000 - 10, at=20)  # c:1 and one of the others
    for job in ("a:1", "b:1"):
        verdict = ledger.verdict(rec, job)
        assert verdict is not None and verdict.verdict == "charged"
        assert verdict.cost == {"usd": 0.025, "generations": 2.5}
        assert "charged $0.05, 5 generations" in verdict.why
    assert rec["totals"]["unexplained"] == {"usd": 0.05, "generations": 5.0}
    rec = ledger.forget(rec, "a:1")
    assert rec["totals"]["attributed"] == {"usd": 0.025, "generations": 2.5}
    assert ledger.verdict(rec, "a:1") is None


def test_a_window_waits_for_the_price_of_an_async_job_then_decides() -> None:
    rec = opened()
    rec = submit(rec, "async:1", 1, "accepted")  # priced when the remote job ends
    rec = submit(rec, "lost:1", 2, "uncertain")
    rec = reading(rec, 100 - 0.05, 1000 - 5, at=20)
    assert ledger.verdict(rec, "lost:1") is None  # async:1's price is not known yet
    rec = ledger.settle(rec, "async:1", PRICE, "op")
    rec, decided = ledger.evaluate(rec, 21, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("lost:1", "clear")]


def test_an_unknown_price_uses_the_last_one_seen_for_the_operation() -> None:
    rec = opened()
    rec = submit(rec, "priced:1", 1, "accepted", PRICE)
    rec = submit(rec, "gone:1", 2, "accepted")
    rec = submit(rec, "lost:1", 3, "uncertain")
    rec = ledger.settle(rec, "gone:1", None, "op")  # remote job lost: its price never comes
    rec = reading(rec, 100 - 0.10, 1000 - 10, at=20)
    verdict = ledger.verdict(rec, "lost:1")
    assert verdict is not None and verdict.verdict == "clear"


def test_without_any_price_the_window_is_inconclusive() -> None:
    rec = opened()
    rec = submit(rec, "gone:1", 1, "accepted")
    rec = submit(rec, "lost:1", 2, "uncertain")
    rec = ledger.settle(rec, "gone:1", None, "never-priced")
    rec = reading(rec, 100 - 0.05, 1000 - 5, at=20)
    verdict = ledger.verdict(rec, "lost:1")
    assert verdict is not None and verdict.verdict == "charged" and "unknown" in verdict.why


def test_a_top_up_makes_the_window_inconclusive_never_clear() -> None:
    rec = opened()
    rec = submit(rec, "lost:1", 1, "uncertain")
    rec = reading(rec, 150.0, 1000, at=20)  # someone bought credits meanwhile
    verdict = ledger.verdict(rec, "lost:1")
    assert verdict is not None and verdict.verdict == "charged"
    assert verdict.cost == {}  # nothing positive to share


def test_charges_of_another_client_are_counted_as_external() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "accepted", PRICE)
    rec = ledger.raise_barrier(rec, 20)
    closed = ledger.close(rec, {"usd": 100 - 0.25, "generations": 1000 - 5}, 20, rec["seq"])
    assert closed is not None
    rec, decided = ledger.evaluate(closed, 20, SETTINGS)
    assert decided == [] and rec["totals"]["external"] == {"usd": 0.2}


def test_no_reading_while_a_submit_is_in_flight_or_charges_may_be_unsettled() -> None:
    rec = opened()
    rec = ledger.begin(rec, "a:1", 1, 61)
    rec = ledger.raise_barrier(rec, 2)
    assert ledger.quiet_in(rec, 2, SETTINGS) is None  # in flight
    assert ledger.close(rec, {"usd": 100}, 2, rec["seq"]) is None
    rec = ledger.end(rec, "a:1", 5, outcome="accepted", cost=PRICE, operation="op")
    assert ledger.quiet_in(rec, 6, SETTINGS) == 9.0  # the charge may settle until 5 + 10
    assert ledger.quiet_in(rec, 15, SETTINGS) == 0.0


def test_a_reading_taken_before_the_record_moved_on_is_refused() -> None:
    rec = opened()
    rec = ledger.raise_barrier(rec, 1)
    seq = rec["seq"]
    again = ledger.close(rec, {"usd": 100}, 2, seq)
    assert again is not None
    assert ledger.close(again, {"usd": 99}, 3, seq) is None  # another worker closed it first


def test_a_submit_whose_worker_vanished_becomes_uncertain_at_its_expiry() -> None:
    rec = opened()
    rec = ledger.begin(rec, "a:1", 1, 31)
    assert ledger.track(rec, "a:1") == "inflight"
    assert ledger.expire(rec, 30) is rec
    rec = ledger.expire(rec, 31)
    assert ledger.track(rec, "a:1") == "waiting" and rec["totals"]["uncertain"] == 1
    assert ledger.quiet_in(rec, 35, SETTINGS) == 6.0  # settles until expiry + lag


def test_the_barrier_is_wanted_when_uncertain_submits_wait_long_enough_or_all_is_quiet() -> None:
    rec = opened()
    rec = ledger.begin(rec, "busy:1", 1, 500)  # keeps the account busy
    rec = ledger.begin(rec, "a:1", 2, 500)
    rec = ledger.end(rec, "a:1", 3, outcome="uncertain", cost=None, operation="op")
    assert not ledger.wanted(rec, 10, SETTINGS)
    assert ledger.wanted(rec, 2 + 30, SETTINGS)
    quiet = ledger.end(rec, "busy:1", 4, outcome="rejected", cost=None, operation="op")
    assert ledger.wanted(quiet, 4 + 10, SETTINGS)  # quiet anyway: a reading costs nothing


def test_an_uncertain_submit_nobody_can_reconcile_is_given_up_as_charged() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "uncertain")
    rec, decided = ledger.evaluate(rec, 1 + 600, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("a:1", "charged")]
    assert "600" in decided[0].why


def test_verdicts_nobody_collects_are_dropped_after_a_while() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "uncertain")
    rec = reading(rec, 100, 1000, at=20)
    assert ledger.verdict(rec, "a:1") is not None
    rec, _ = ledger.evaluate(rec, 20 + 601, SETTINGS)
    assert ledger.verdict(rec, "a:1") is None


def test_an_unreadable_balance_gives_up_the_window_and_lets_submits_go_on() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 1, "uncertain")
    rec = ledger.raise_barrier(rec, 20)
    for attempt in range(3):
        assert ledger.blocked(rec, 20 + attempt, SETTINGS) is not None
        rec = ledger.read_failed(rec, 20 + attempt, SETTINGS)
    # The third failure in a row: nobody waits for the balance any more for a while.
    assert ledger.blocked(rec, 23, SETTINGS) is None
    rec, decided = ledger.evaluate(rec, 23, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("a:1", "charged")]
    assert "could not be read" in decided[0].why
    # Submits made meanwhile have no reading before them: they cannot be cleared.
    rec = submit(rec, "b:1", 30, "uncertain")
    assert ledger.blocked(rec, 30 + 60, SETTINGS) is not None  # time to try a reading again
    rec = ledger.raise_barrier(rec, 90)
    closed = ledger.close(rec, {"usd": 100}, 90, rec["seq"])
    assert closed is not None
    rec, decided = ledger.evaluate(closed, 90, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("b:1", "charged")]
    assert "no clean reading" in decided[0].why


def test_a_resumed_job_proves_an_expired_submit_was_accepted() -> None:
    rec = opened()
    rec = ledger.begin(rec, "a:1", 1, 5)  # its worker dies after storing the remote id
    rec = ledger.expire(rec, 5)
    assert ledger.track(rec, "a:1") == "waiting"
    rec = ledger.settle(rec, "a:1", PRICE, "op")  # the resumed job finished and was priced
    assert ledger.track(rec, "a:1") == "unknown" and rec["totals"]["uncertain"] == 0
    rec = reading(rec, 100 - 0.05, 1000 - 5, at=20)
    assert rec["totals"]["external"] == {} and rec["totals"]["charged"] == 0


def test_an_acceptance_proven_after_the_verdict_is_not_counted_twice() -> None:
    """A sync charge stored on the job, its worker dead before telling the ledger: the
    window judged the submit without it. When the job proves the acceptance, its real cost
    leaves the unexplained total, so spend (jobs) + unexplained - attributed == charged."""
    for prove in ("end", "settle"):
        rec = opened()
        rec = ledger.begin(rec, "a:1", 1, 5)  # accepted and charged; its worker dies
        rec = ledger.expire(rec, 5)
        rec = submit(rec, "b:1", 6, "uncertain")  # not charged
        rec = reading(rec, 100 - 0.05, 1000 - 5, at=30)
        assert ledger.track(rec, "a:1") == "verdict"
        assert rec["totals"]["unexplained"] == {"usd": 0.05, "generations": 5.0}
        if prove == "end":
            rec = ledger.end(rec, "a:1", 40, outcome="accepted", cost=PRICE, operation="op")
        else:
            rec = ledger.settle(rec, "a:1", PRICE, "op")
        assert ledger.verdict(rec, "a:1") is None  # nobody will attribute its share
        rec = ledger.forget(rec, "b:1")  # b:1 took its share (it may have been charged)
        totals = rec["totals"]
        job_costs = PRICE["usd"] + 0.025  # a:1's real cost, b:1's share
        accounted = job_costs + totals["unexplained"]["usd"] - totals["attributed"]["usd"]
        assert round(accounted, 9) == 0.05, prove


def test_an_unpriced_submit_whose_job_ended_is_abandoned_and_frees_its_window() -> None:
    """An async submit accepted (priced when its remote job ends) whose job was then
    dead-lettered while polling (killed three times): nobody will price it. It held its
    window's verdicts back for give_up_after (an hour by default); abandoning it prices it
    at the operation's last price, counted as charged on no job, and the window decides."""
    rec = opened()
    rec = submit(rec, "old:1", 1, "accepted")
    rec = ledger.settle(rec, "old:1", PRICE, "op")  # the operation's price is known
    rec = submit(rec, "a:1", 2, "accepted")  # unpriced; its job will die
    rec = submit(rec, "b:1", 3, "uncertain")  # not charged
    rec = reading(rec, 100 - 0.10, 1000 - 10, at=20)
    assert ledger.track(rec, "b:1") == "waiting"  # held back by a:1's missing price
    assert ledger.awaiting_price(rec) == ["a:1"]
    rec = ledger.abandon(rec, "a:1", 21)
    assert ledger.awaiting_price(rec) == []
    rec, decided = ledger.evaluate(rec, 21, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("b:1", "clear")]
    # Spend (jobs) + charged on no job == what the account was charged.
    assert rec["totals"]["unexplained"] == PRICE
    assert PRICE["usd"] + rec["totals"]["unexplained"]["usd"] == 0.10
    # Redriven, the job polls its remote job to the end and prices it: it carries the cost.
    rec = ledger.settle(rec, "a:1", PRICE, "op")
    assert rec["totals"]["unexplained"] == {"usd": 0.0, "generations": 0.0}
    assert rec["unclaimed"] == {}


def test_an_unpriced_submit_of_a_completed_job_is_priced_but_not_counted_again() -> None:
    rec = opened()
    rec = submit(rec, "old:1", 1, "accepted")
    rec = ledger.settle(rec, "old:1", PRICE, "op")
    rec = submit(rec, "a:1", 2, "accepted")
    rec = reading(rec, 100 - 0.10, 1000 - 10, at=20)
    rec = ledger.abandon(rec, "a:1", 21, on_job=True)
    rec, _ = ledger.evaluate(rec, 21, SETTINGS)
    assert rec["closed"] == [] and rec["totals"]["unexplained"] == {}
    assert rec["totals"]["external"] == {}


def test_abandoning_without_a_known_price_leaves_the_window_inconclusive() -> None:
    rec = opened()
    rec = submit(rec, "a:1", 2, "accepted")
    rec = submit(rec, "b:1", 3, "uncertain")
    rec = reading(rec, 100 - 0.05, 1000 - 5, at=20)
    rec = ledger.abandon(rec, "a:1", 21)
    rec, decided = ledger.evaluate(rec, 21, SETTINGS)
    assert [(v.submit_id, v.verdict) for v in decided] == [("b:1", "charged")]
    assert "unknown" in decided[0].why


def test_a_settled_submit_still_in_flight_is_accepted_not_left_to_expire() -> None:
    """An async submit accepted, its worker killed before telling the ledger; the resumed
    job polls it to the end and prices it while the request is still in flight in the
    ledger. Before, settle found nothing, the request later expired into "uncertain", and
    its charge (already on the completed job) was counted again as unexplained."""
    for cost in (PRICE, None):
        rec = opened()
        rec = submit(rec, "old:1", 1, "accepted", PRICE)  # the operation's price
        rec = ledger.begin(rec, "a:1", 2, 100)  # accepted; its worker dies
        rec = ledger.settle(rec, "a:1", cost, "op", 30)
        assert ledger.track(rec, "a:1") == "unknown" and rec["inflight"] == {}
        rec = ledger.expire(rec, 101)  # nothing left to expire
        rec = reading(rec, 100 - 0.10, 1000 - 10, at=120)
        assert rec["totals"]["uncertain"] == 0 and rec["totals"]["external"] == {}
        assert rec["verdicts"] == {} and rec["totals"]["unexplained"] == {}
