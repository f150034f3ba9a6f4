"""The submit ledger of one provider account: what was sent, what was charged, what is unknown.

A submit whose answer does not prove rejection (a 5xx, a dropped connection, a read
timeout after the body went out, a worker that died mid-request) may have been accepted
and charged. Resending it blindly can pay twice; giving up on it can drop work that was
never charged. The ledger decides with the account's balance instead of guessing.

Time is cut into *windows* by *clean readings* of the balance: readings taken while no
submit is in flight and the last one ended at least the provider's settlement lag ago, so
every charge made before the reading shows in it and none made after does. Between two
clean readings the balance moved by exactly what the account was charged in between:

    unexplained = (balance at start - balance at end) - (charges known to be accepted)

If that is zero, none of the window's uncertain submits was accepted, and each may be sent
again. Otherwise they may have been charged: their jobs go to the DLQ as
``submission_uncertain``, and the unexplained amount is shared among them so that spend
reconciles with the provider's ledger. Money nobody explains (another client of the same
account, a top-up) makes a window inconclusive, which also counts as "may have been
charged": the safe side.

An accepted submit whose price comes later (an async job, priced when it ends) keeps
its window open until then. If its job ends without pricing it (dead-lettered while the
remote job ran, cancelled, deleted), it never will: the job is *abandoned* and the charge
priced at the operation's last price, counted as charged but on no job (until that job,
redriven, prices it), so a dead job never holds its window's verdicts back.

Clean readings need quiet: while a window has undecided uncertain submits, a *barrier*
stops new submits on the account until those in flight have ended and the settlement lag
has passed (seconds to a minute; nothing else is delayed). The very first submit of an
account takes a clean reading first, so every submit belongs to a window.

This module is pure: functions from a record (JSON, kept in the backend's shared state by
``genqueue.providers.reconcile``) and the time to a new record. Units are whatever the
balance and the usage report (``usd``, ``generations``); only units present in both
readings are compared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from genqueue.humanize import amounts

Record = dict[str, Any]
Amounts = dict[str, float]
Outcome = Literal["accepted", "rejected", "uncertain"]

#: Differences below this are rounding, not charges.
EPSILON = 1e-6
#: How long an abandoned submit waits for its job (redriven) to price it after all: as
#: long as a dead letter is kept by default.
UNCLAIMED_KEPT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class LedgerSettings:
    #: A charge shows in the balance at most this long after the request ended.
    settlement_lag: float = 60.0
    #: Raise a barrier once the oldest undecided uncertain submit is this old (sooner if
    #: the account is quiet anyway). Longer means fewer pauses, later verdicts.
    reconcile_after: float = 30.0
    #: An uncertain submit still undecided after this long is treated as charged.
    give_up_after: float = 3600.0
    #: How long after its read timeout an unanswered request may still be charged.
    inflight_grace: float = 30.0
    #: Failed balance reads in a row before the open window is given up (its uncertain
    #: submits count as charged) and submits go on without readings for ``unreadable_for``.
    read_attempts: int = 3
    unreadable_for: float = 60.0


@dataclass(frozen=True)
class Verdict:
    submit_id: str
    #: ``clear``: the balance proves it was not charged. ``charged``: it may have been.
    verdict: Literal["clear", "charged"]
    why: str
    #: This job's share of the unexplained charge (``charged`` only).
    cost: Amounts


def ledger_key(account: str) -> str:
    return f"ledger:{account}"


def new_record() -> Record:
    return {
        "seq": 0,
        "epoch": None,
        "open": _window(0, None),
        "closed": [],
        "inflight": {},
        "last_end": 0.0,
        "barrier": None,
        "read_failures": 0,
        "unreadable_since": None,
        "verdicts": {},
        "prices": {},
        "unclaimed": {},
        "totals": {
            "uncertain": 0,
            "cleared": 0,
            "charged": 0,
            "unexplained": {},
            "external": {},
            "attributed": {},
            "blind_resubmits": 0,
        },
    }


def _window(number: int, start: Record | None) -> Record:
    return {"id": number, "start": start, "known": {}, "pending": [], "uncertain": {}}


def _add(into: Amounts, amounts: Amounts) -> None:
    for unit, amount in amounts.items():
        into[unit] = round(float(into.get(unit, 0.0)) + float(amount), 9)


def _windows(rec: Record) -> list[Record]:
    return [*rec["closed"], rec["open"]]


def _find(rec: Record, number: int) -> Record:
    for window in _windows(rec):
        if window["id"] == number:
            return window
    return dict(rec["open"])  # a window already evaluated: record into a throwaway copy


# -- submits -------------------------------------------------------------------------------


def expire(rec: Record, now: float) -> Record:
    """Requests unanswered past their expiry are uncertain (their worker is gone)."""
    stale = [job for job, entry in rec["inflight"].items() if entry["expires"] <= now]
    if not stale:
        return rec
    rec = copy.deepcopy(rec)
    for job_id in stale:
        entry = rec["inflight"].pop(job_id)
        _find(rec, entry["window"])["uncertain"][job_id] = entry["at"]
        rec["totals"]["uncertain"] += 1
        rec["last_end"] = max(rec["last_end"], entry["expires"])
    return rec


def blocked(rec: Record, now: float, settings: LedgerSettings) -> str | None:
    """Why a submit may not start now (None: it may)."""
    if rec["barrier"] is not None:
        return "reconciling uncertain submits with the account balance"
    if rec["epoch"] is None and not _unreadable(rec, now, settings):
        return "taking a first reading of the account balance"
    return None


def _unreadable(rec: Record, now: float, settings: LedgerSettings) -> bool:
    """The balance could not be read lately: submits go on without a reading for a while."""
    since = rec.get("unreadable_since")
    return since is not None and now - float(since) < settings.unreadable_for


def begin(rec: Record, job_id: str, now: float, expires: float) -> Record:
    """Record a submit going out (the caller checked ``blocked`` on this same record)."""
    rec = copy.deepcopy(rec)
    rec["inflight"][job_id] = {"at": now, "expires": expires, "window": rec["open"]["id"]}
    rec["verdicts"].pop(job_id, None)
    rec["seq"] += 1
    return rec


def end(
    rec: Record, job_id: str, now: float, *, outcome: Outcome, cost: Amounts | None, operation: str
) -> Record:
    """Record how a submit ended; ``cost`` is None when an accepted job's price comes later."""
    rec = copy.deepcopy(rec)
    entry = rec["inflight"].pop(job_id, None)
    if entry is None:
        # Expired meanwhile (it was already counted as uncertain); an answer settles it.
        for window in _windows(rec):
            if window["uncertain"].pop(job_id, None) is not None:
                rec["totals"]["uncertain"] -= 1
                entry = {"window": window["id"]}
                break
        else:
            if outcome == "accepted":
                _proven_late(rec, job_id, cost, operation)
            return rec
    window = _find(rec, entry["window"])
    rec["last_end"] = max(rec["last_end"], now)
    if outcome == "uncertain":
        window["uncertain"][job_id] = entry.get("at", now)
        rec["totals"]["uncertain"] += 1
    elif outcome == "accepted" and cost is None:
        window["pending"].append(job_id)
        window.setdefault("operations", {})[job_id] = operation
    elif outcome == "accepted":
        _charge(rec, window, cost or {}, operation)
    return rec


def _charge(rec: Record, window: Record, cost: Amounts | None, operation: str) -> None:
    if cost is None:
        cost = rec["prices"].get(operation)  # what this operation cost the last time
    if cost is None:
        window["unknown"] = True
        return
    if operation:  # "" when only the job knew what it was
        rec["prices"][operation] = cost
    _add(window["known"], cost)


def settle(
    rec: Record, job_id: str, cost: Amounts | None, operation: str, now: float = 0.0
) -> Record:
    """The price of an accepted job whose cost was not known when it was accepted (None: it
    will never be known; the last price seen for the operation stands in, if any)."""
    if job_id in rec["inflight"]:
        # Its worker died between the acceptance and telling the ledger (the resumed job
        # proves it was accepted): without this, the request would later expire into
        # "uncertain" and its charge be counted again as unexplained.
        rec = end(rec, job_id, now, outcome="accepted", cost=cost, operation=operation)
        return rec if cost is not None else settle(rec, job_id, None, operation, now)
    for index, window in enumerate(_windows(rec)):
        if job_id in window["pending"]:
            rec = copy.deepcopy(rec)
            found = _windows(rec)[index]
            found["pending"].remove(job_id)
            found.get("operations", {}).pop(job_id, None)
            _charge(rec, found, cost, operation)
            return rec
        if job_id in window["uncertain"]:
            # Its worker died before recording the acceptance (the submit expired into
            # "uncertain"); the job, resumed, proves it was accepted.
            rec = copy.deepcopy(rec)
            found = _windows(rec)[index]
            del found["uncertain"][job_id]
            rec["totals"]["uncertain"] -= 1
            _charge(rec, found, cost, operation)
            return rec
    if job_id in rec["verdicts"]:
        rec = copy.deepcopy(rec)
        _proven_late(rec, job_id, cost, operation)
    elif job_id in rec.get("unclaimed", {}):
        # An abandoned submit's job was redriven and priced it: the job carries the cost.
        rec = copy.deepcopy(rec)
        estimate = rec["unclaimed"].pop(job_id)["cost"]
        unexplained = rec["totals"]["unexplained"]
        for unit, amount in estimate.items():
            if unit in unexplained:
                unexplained[unit] = round(max(0.0, unexplained[unit] - float(amount)), 9)
    return rec


def awaiting_price(rec: Record) -> list[str]:
    """Accepted submits of closed windows still waiting for their price."""
    return [job for window in rec["closed"] for job in window["pending"]]


def unproven(rec: Record) -> list[str]:
    """Submits whose acceptance is not known: in flight, uncertain, or judged."""
    uncertain = [job for window in _windows(rec) for job in window["uncertain"]]
    return [*rec["inflight"], *uncertain, *rec["verdicts"]]


def unsettled(rec: Record) -> bool:
    """Is anything left to decide: a submit in flight or uncertain, a window not yet
    evaluated, a barrier up?"""
    return bool(
        rec["barrier"] is not None
        or rec["inflight"]
        or rec["closed"]
        or any(window["uncertain"] for window in _windows(rec))
    )


def abandon(rec: Record, job_id: str, now: float, *, on_job: bool = False) -> Record:
    """The job of an accepted, unpriced submit ended without pricing it (see the module
    docstring): price it at its operation's last price, as charged on no job (``on_job``:
    the job completed and carries its cost; only the ledger missed the price)."""
    for index, window in enumerate(rec["closed"]):
        if job_id not in window["pending"]:
            continue
        rec = copy.deepcopy(rec)
        found = rec["closed"][index]
        found["pending"].remove(job_id)
        operation = found.get("operations", {}).pop(job_id, "")
        cost = rec["prices"].get(operation)
        _charge(rec, found, cost, operation)  # no price known: the window is inconclusive
        if cost and not on_job:
            _add(rec["totals"]["unexplained"], cost)
            rec.setdefault("unclaimed", {})[job_id] = {"cost": cost, "at": now}
        return rec
    return rec


def _proven_late(rec: Record, job_id: str, cost: Amounts | None, operation: str) -> None:
    """A submit already judged (its window closed) turns out to have been accepted: its
    job carries its real cost, so that cost is no longer unexplained and the verdict (a
    share of the window's unexplained charge) is dropped, not attributed to anyone."""
    if rec["verdicts"].pop(job_id, None) is None:
        return
    if cost is None:
        cost = rec["prices"].get(operation)
    unexplained = rec["totals"]["unexplained"]
    for unit, amount in (cost or {}).items():
        if unit in unexplained:
            unexplained[unit] = round(max(0.0, unexplained[unit] - float(amount)), 9)


def track(rec: Record, job_id: str) -> str:
    """Where an uncertain job stands: ``verdict``, ``inflight``, ``waiting`` or ``unknown``."""
    if job_id in rec["verdicts"]:
        return "verdict"
    if job_id in rec["inflight"]:
        return "inflight"
    if any(job_id in window["uncertain"] for window in _windows(rec)):
        return "waiting"
    return "unknown"


def verdict(rec: Record, job_id: str) -> Verdict | None:
    found = rec["verdicts"].get(job_id)
    if found is None:
        return None
    return Verdict(job_id, found["verdict"], found["why"], dict(found.get("cost") or {}))


def forget(rec: Record, job_id: str) -> Record:
    """The job acted on its verdict (and took its share of a charge onto its cost)."""
    if job_id not in rec["verdicts"]:
        return rec
    rec = copy.deepcopy(rec)
    found = rec["verdicts"].pop(job_id)
    _add(rec["totals"]["attributed"], found.get("cost") or {})
    return rec


def count_blind_resubmit(rec: Record) -> Record:
    rec = copy.deepcopy(rec)
    rec["totals"]["blind_resubmits"] += 1
    return rec


# -- readings ------------------------------------------------------------------------------


def wanted(rec: Record, now: float, settings: LedgerSettings) -> bool:
    """Should a clean reading be taken (and submits paused for it)?"""
    if rec["barrier"] is not None:
        return True
    if rec["epoch"] is None:
        return not _unreadable(rec, now, settings)
    waiting = rec["open"]["uncertain"]
    if not waiting:
        return False
    return (
        now - min(waiting.values()) >= settings.reconcile_after
        or quiet_in(rec, now, settings) == 0.0
    )


def raise_barrier(rec: Record, now: float) -> Record:
    if rec["barrier"] is not None:
        return rec
    rec = copy.deepcopy(rec)
    rec["barrier"] = now
    return rec


def quiet_in(rec: Record, now: float, settings: LedgerSettings) -> float | None:
    """Seconds until a reading would be clean: 0 now, None while requests are in flight."""
    if rec["inflight"]:
        return None
    return max(0.0, float(rec["last_end"]) + settings.settlement_lag - now)


def close(rec: Record, reading: Amounts, now: float, seq: int) -> Record | None:
    """Apply a clean reading taken while the record was at ``seq``; None if it moved on."""
    if rec["seq"] != seq or rec["inflight"]:
        return None
    rec = copy.deepcopy(rec)
    point = {"at": now, "balance": dict(reading)}
    finished = rec["open"]
    if finished["start"] is not None or finished["uncertain"]:
        finished["end"] = point  # a window without a start cannot clear anything
        rec["closed"].append(finished)
    rec["epoch"] = point
    rec["open"] = _window(rec["open"]["id"] + 1, point)
    rec["barrier"] = None
    rec["read_failures"] = 0
    rec["unreadable_since"] = None
    rec["seq"] += 1
    return rec


def read_failed(rec: Record, now: float, settings: LedgerSettings) -> Record:
    """A balance read failed. After ``read_attempts`` in a row, stop waiting for one: the
    open window's uncertain submits count as charged and submits go on unreconciled."""
    rec = copy.deepcopy(rec)
    rec["read_failures"] += 1
    if rec["read_failures"] < settings.read_attempts:
        return rec
    finished = rec["open"]
    finished["end"] = None
    rec["closed"].append(finished)
    rec["epoch"] = None
    rec["open"] = _window(finished["id"] + 1, None)
    rec["barrier"] = None
    rec["read_failures"] = 0
    rec["unreadable_since"] = now
    rec["seq"] += 1
    return rec


def evaluate(rec: Record, now: float, settings: LedgerSettings) -> tuple[Record, list[Verdict]]:
    """Decide every closed window whose costs are all known (or that waited too long)."""
    rec = copy.deepcopy(rec)
    decided: list[Verdict] = []
    keep = []
    for window in rec["closed"]:
        overdue = window["end"] is None or now - window["end"]["at"] >= settings.give_up_after
        if window["pending"] and not overdue:
            keep.append(window)
            continue
        decided += _decide(rec, window, _inconclusive(window))
    rec["closed"] = keep
    decided += _give_up(rec, now, settings)
    for found in decided:
        rec["verdicts"][found.submit_id] = {"verdict": found.verdict, "why": found.why,
                                         "cost": found.cost, "at": now}  # fmt: skip
        rec["totals"]["cleared" if found.verdict == "clear" else "charged"] += 1
    # Verdicts nobody came for (a blindly resubmitted job moved on) are not kept forever.
    old = [job for job, v in rec["verdicts"].items() if now - v["at"] > settings.give_up_after]
    for job in old:
        del rec["verdicts"][job]
    unclaimed = rec.setdefault("unclaimed", {})
    for job in [job for job, u in unclaimed.items() if now - u["at"] > UNCLAIMED_KEPT]:
        del unclaimed[job]
    return rec, decided


def _inconclusive(window: Record) -> str | None:
    """Why the window's balance cannot decide anything (None: it can)."""
    if window["start"] is None:
        return "no clean reading of the balance before the submit"
    if window["end"] is None:
        return "the balance could not be read"
    if window["pending"] or window.get("unknown"):
        return "a charge's amount is unknown"
    return None


def _decide(rec: Record, window: Record, unknown: str | None) -> list[Verdict]:
    jobs = sorted(window["uncertain"], key=lambda job: window["uncertain"][job])
    if window["start"] is None or window["end"] is None:
        before: Amounts = {}
        after: Amounts = {}
    else:
        before, after = window["start"]["balance"], window["end"]["balance"]
    units = sorted(set(before) & set(after))
    unexplained = {
        unit: round(before[unit] - after[unit] - window["known"].get(unit, 0.0), 9)
        for unit in units
    }
    moved = {unit: amount for unit, amount in unexplained.items() if abs(amount) > EPSILON}
    if not jobs:
        if unknown is None:
            _add(rec["totals"]["external"], moved)  # another client of this account
        return []
    if unknown is None and not moved and units:
        why = "the account balance shows no charge for it"
        return [Verdict(job, "clear", why, {}) for job in jobs]
    if unknown is not None:
        why = f"the account balance could not be reconciled ({unknown})"
    elif not units:
        why = "the balance reports no unit that usage reports"
    else:
        why = f"the account was charged {amounts(moved)} that no accepted submit explains"
    charged = {unit: amount for unit, amount in moved.items() if amount > 0}
    _add(rec["totals"]["unexplained"], charged)
    share = {unit: round(amount / len(jobs), 9) for unit, amount in charged.items()}
    return [Verdict(job, "charged", why, share) for job in jobs]


def _give_up(rec: Record, now: float, settings: LedgerSettings) -> list[Verdict]:
    """Uncertain submits of the open window that waited longer than ``give_up_after``."""
    waiting = rec["open"]["uncertain"]
    late = [job for job, at in waiting.items() if now - at >= settings.give_up_after]
    for job in late:
        del waiting[job]
    why = f"no clean reading of the account balance within {settings.give_up_after:g} s"
    return [Verdict(job, "charged", why, {}) for job in late]


def summary(rec: Record) -> dict[str, Any]:
    """What ``genqueue stats`` shows of the ledger."""
    undecided = sum(len(window["uncertain"]) for window in _windows(rec))
    return {
        **copy.deepcopy(rec["totals"]),
        "undecided": undecided,
        "in_flight": len(rec["inflight"]),
        "barrier": rec["barrier"] is not None,
        "last_reading": rec["epoch"],
    }
