"""Account state of the fake PixelLab server: the single source of truth, behind one lock.

Owns: tokens (label, revoked), the shared USD balance and the charge ledger, jobs and
characters, per-token concurrency (async in-flight jobs, concurrent sync calls), the fake
clock (monotonic time plus an offset tests can advance) and every statistic reported by
``GET /_fake/stats``. Raw bearer tokens live only in the token table and never leave it:
everything else is keyed by the token's label.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from genqueue.providers.fake_pixellab.jobs import Job, JobStore, Outcome, PollView
from genqueue.providers.fake_pixellab.options import FakeOptions
from genqueue.providers.fake_pixellab.png import ImageSpec
from genqueue.providers.fake_pixellab.routes import Route


class InsufficientCredits(Exception):
    """The balance does not cover the cost (answer 402)."""


class TokenRevoked(Exception):
    """The token was revoked after the request was authenticated (answer 401).

    Checked again under the lock that bills, so a request in flight when a test revokes
    its key is never charged after the revocation (as a real server bills at one instant).
    """


class TooManyJobs(Exception):
    """The token already has the maximum number of jobs in flight (answer 429)."""


class SyncOverload(Exception):
    """Too many concurrent sync calls for the token (answer 529)."""


@dataclass(frozen=True)
class Charge:
    """One ledger line: an accepted, billed submit."""

    seq: int
    at: str
    token_label: str
    operation: str
    usd: float
    generations: int
    remote_job_ids: tuple[str, ...]
    client_job_id: str | None
    balance_after: float
    #: When the charge shows in ``GET /balance`` (fake clock; see ``settlement_lag``).
    settles_at: float = 0.0


@dataclass(frozen=True)
class Submit:
    """A validated async submit: who, which route, which jobs, which extra id."""

    label: str
    route: Route
    specs: list[ImageSpec]
    client_job_id: str | None
    forced: Outcome | None = None
    extra_id: str | None = None


@dataclass(frozen=True)
class Accepted:
    """An accepted async submit: its charge and jobs (plus a character id, if any)."""

    charge: Charge
    jobs: tuple[Job, ...]
    extra_id: str | None


class _Counters:
    """Plain statistics; always mutated under the state lock."""

    def __init__(self) -> None:
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.dropped = 0
        self.hung = 0
        self.faults: Counter[str] = Counter()
        self.submits_by_operation: Counter[str] = Counter()
        self.accepted_by_operation: Counter[str] = Counter()
        self.submits_by_client_job: Counter[str] = Counter()
        self.charges_by_client_job: Counter[str] = Counter()
        self.polls_by_job: Counter[str] = Counter()
        self.polls_by_client_job: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self.rejected_429: Counter[str] = Counter()
        self.peak_after_first_429: Counter[str] = Counter()
        self.peak_sync: Counter[str] = Counter()
        # Fake-clock instants, so tests can check that clients honour cooldowns.
        self.submit_times: list[float] = []
        self.rejected_429_times: list[float] = []


class FakeState:
    """Everything the fake remembers (thread-safe)."""

    def __init__(self, options: FakeOptions) -> None:
        self.options = options
        self.lock = threading.RLock()
        self._offset = 0.0
        self.reset()

    def reset(self) -> None:
        """Back to the configured tokens and balance; forget jobs, ledger and stats."""
        with self.lock:
            opts = self.options
            self._tokens: dict[str, str] = dict(opts.tokens)
            self._revoked: set[str] = set()
            self.balance = float(opts.balance_usd)
            self.generations_used = 0
            self.ledger: list[Charge] = []
            self.jobs = JobStore()
            self.characters: dict[str, ImageSpec] = {}
            self.sync_now: Counter[str] = Counter()
            self.stats = _Counters()
            self.rng = random.Random(opts.seed)

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        """Monotonic seconds, shifted by :meth:`advance_clock`."""
        return time.monotonic() + self._offset

    def wall(self) -> str:
        """Wall-clock ISO-8601 time, shifted the same way."""
        return (datetime.now(UTC) + timedelta(seconds=self._offset)).isoformat()

    def advance_clock(self, seconds: float) -> None:
        """Pretend ``seconds`` passed (job deadlines and TTLs)."""
        with self.lock:
            self._offset += seconds

    # -- tokens --------------------------------------------------------------------------

    def label_of(self, token: str | None) -> str | None:
        """The label of an active token, or None (unknown, revoked, missing)."""
        with self.lock:
            label = self._tokens.get(token or "")
            return None if label is None or label in self._revoked else label

    def add_token(self, token: str, label: str) -> None:
        """Accept a new token under a unique ``label``."""
        with self.lock:
            owner = next((t for t, lab in self._tokens.items() if lab == label), None)
            if owner is not None and owner != token:
                raise ValueError(f"label {label!r} is already used by another token")
            self._tokens[token] = label
            self._revoked.discard(label)

    def set_revoked(self, label: str, revoked: bool) -> None:
        """Revoke (401 from now on) or restore a token, by label."""
        with self.lock:
            if label not in self._tokens.values():
                raise KeyError(label)
            (self._revoked.add if revoked else self._revoked.discard)(label)

    def _check_active(self, label: str) -> None:
        if label in self._revoked:
            raise TokenRevoked

    def label_for_token(self, token: str) -> str:
        """The label of a configured token (revoked or not); KeyError if unknown."""
        with self.lock:
            return self._tokens[token]

    # -- billing -------------------------------------------------------------------------

    def cost_of(self, route: Route) -> float:
        """USD charged per accepted submit of ``route``."""
        return self.options.costs_usd.get(route.operation, route.cost_usd)

    def usage_of(self, route: Route) -> dict[str, Any]:
        """The ``usage`` object for ``route`` (v1 has no ``generations``)."""
        usage: dict[str, Any] = {"type": "usd", "usd": self.cost_of(route)}
        if route.usage_shape == "v2":
            usage["generations"] = route.generations
        return usage

    def _charge(
        self, label: str, route: Route, job_ids: tuple[str, ...], client_job_id: str | None
    ) -> Charge:
        cost = self.cost_of(route)
        if self.balance + 1e-9 < cost:
            raise InsufficientCredits
        self.balance = round(self.balance - cost, 9)
        self.generations_used += route.generations
        settles_at = self.now() + self._settlement_lag()
        record = Charge(len(self.ledger) + 1, self.wall(), label, route.operation, cost,
                        route.generations, job_ids, client_job_id, self.balance,
                        settles_at)  # fmt: skip
        self.ledger.append(record)
        self.stats.accepted_by_operation[route.operation] += 1
        if client_job_id is not None:
            self.stats.charges_by_client_job[client_job_id] += 1
        return record

    def _settlement_lag(self) -> float:
        lag = self.options.settlement_lag
        low, high = lag if isinstance(lag, tuple) else (lag, lag)
        return self.rng.uniform(low, high) if high > low else max(0.0, low)

    def visible_balance(self) -> tuple[float, int]:
        """(USD, generations used) as ``GET /balance`` shows them: settled charges only."""
        with self.lock:
            now = self.now()
            unsettled = [c for c in self.ledger if c.settles_at > now]
            usd = self.balance + sum(c.usd for c in unsettled)
            return round(usd, 9), self.generations_used - sum(c.generations for c in unsettled)

    def charge_sync(self, label: str, route: Route, client_job_id: str | None) -> Charge:
        """Bill an accepted sync call; raises :class:`InsufficientCredits`."""
        with self.lock:
            self._check_active(label)
            return self._charge(label, route, (), client_job_id)

    def set_balance(self, usd: float) -> None:
        """Set the account balance."""
        with self.lock:
            self.balance = float(usd)

    # -- submits and jobs ----------------------------------------------------------------

    def note_submit(self, operation: str, client_job_id: str | None) -> None:
        """Count a submit attempt (every request to a generation route)."""
        with self.lock:
            self.stats.submit_times.append(self.now())
            self.stats.submits_by_operation[operation] += 1
            if client_job_id is not None:
                self.stats.submits_by_client_job[client_job_id] += 1

    def _poll_target(self) -> int:
        wanted = self.options.complete_after_polls
        if isinstance(wanted, tuple):
            return self.rng.randint(wanted[0], wanted[1])
        return wanted

    def _admit(self, label: str) -> None:
        opts, stats = self.options, self.stats
        self.jobs.sweep(self.now(), opts.complete_after_seconds, opts.job_ttl_seconds)
        if self.jobs.in_flight(label) >= opts.max_concurrent_jobs:
            stats.rejected_429[label] += 1
            stats.rejected_429_times.append(self.now())
            raise TooManyJobs

    def _track_peak(self, label: str) -> None:
        stats = self.stats
        count = self.jobs.in_flight(label)
        stats.peak_in_flight[label] = max(stats.peak_in_flight[label], count)
        if stats.rejected_429[label]:
            stats.peak_after_first_429[label] = max(stats.peak_after_first_429[label], count)

    def accept_async(self, submit: Submit) -> Accepted:
        """Bill an async submit and create its jobs, atomically.

        Raises :class:`InsufficientCredits` (402, checked first) or :class:`TooManyJobs`.
        One submit takes one concurrency slot until all of its jobs finish (so the four
        direction jobs of ``animate-character`` count once).
        """
        label, route = submit.label, submit.route
        with self.lock:
            self._check_active(label)
            if self.balance + 1e-9 < self.cost_of(route):
                raise InsufficientCredits
            self._admit(label)
            now, created = self.now(), self.wall()
            ids = [str(uuid.uuid4()) for _ in submit.specs]
            jobs = tuple(
                Job(job_id, label, route.operation, spec, self.usage_of(route), created, now,
                    self._poll_target(), submit.client_job_id, slot=ids[0],
                    forced=submit.forced)
                for job_id, spec in zip(ids, submit.specs, strict=True)
            )  # fmt: skip
            for job in jobs:
                self.jobs.add(job)
            job_ids = tuple(j.id for j in jobs)
            charge = self._charge(label, route, job_ids, submit.client_job_id)
            self._track_peak(label)
            if route.creates_character and submit.extra_id is not None:
                self.characters[submit.extra_id] = submit.specs[0]
            return Accepted(charge, jobs, submit.extra_id)

    def character(self, character_id: str) -> ImageSpec | None:
        """A character created by ``create-character-with-4-directions``, if any."""
        with self.lock:
            return self.characters.get(character_id)

    def poll(self, label: str, job_id: str, client_job_id: str | None) -> PollView:
        """Count a poll of ``label``'s job; raises ``JobNotFound``."""
        with self.lock:
            opts = self.options
            self.jobs.sweep(self.now(), opts.complete_after_seconds, opts.job_ttl_seconds)
            job = self.jobs.get(job_id, label)
            self.stats.polls_by_job[job_id] += 1
            if client_job_id is not None:
                self.stats.polls_by_client_job[client_job_id] += 1
            return self.jobs.poll(job, self.now(), opts.complete_after_seconds,
                                  opts.progress_status)  # fmt: skip

    def force(self, job_id: str, outcome: Outcome, owner: str | None = None) -> None:
        """Make a job end as ``outcome`` (when it finishes); raises ``JobNotFound``."""
        with self.lock:
            self.jobs.get(job_id, owner).forced = outcome

    # -- sync concurrency ----------------------------------------------------------------

    @contextmanager
    def sync_slot(self, label: str) -> Iterator[None]:
        """Hold one of ``label``'s sync slots; raises :class:`SyncOverload` when full."""
        with self.lock:
            if self.sync_now[label] >= self.options.max_concurrent_sync:
                raise SyncOverload
            self.sync_now[label] += 1
            self.stats.peak_sync[label] = max(self.stats.peak_sync[label], self.sync_now[label])
        try:
            yield
        finally:
            with self.lock:
                self.sync_now[label] -= 1

    # -- counters ------------------------------------------------------------------------

    def count(self, status: int | None, fault_kind: str | None = None) -> None:
        """Count one answered request (``status`` None = dropped connection)."""
        with self.lock:
            stats = self.stats
            stats.requests += 1
            if status is None and fault_kind != "hang":
                stats.dropped += 1
            else:
                stats.by_status[str(status)] += 1
            if fault_kind is not None:
                stats.faults[fault_kind] += 1

    def count_hang(self) -> None:
        """Count a request that was hung."""
        with self.lock:
            self.stats.hung += 1

    def snapshot(self) -> dict[str, Any]:
        """Every statistic as JSON-able data (labels only, never tokens).

        Keys: ``balance_usd``, ``total_charged_usd``, ``charges`` (ledger length),
        ``ledger`` (:class:`Charge` dicts); ``submits_by_operation`` (every request that
        reached a generation route, whatever its answer: 401, 422, faults included) and
        ``accepted_by_operation`` (charged ones); ``submits_by_client_job`` /
        ``charges_by_client_job`` / ``polls_by_client_job`` (by ``X-Client-Job-Id``);
        ``polls_by_job`` (remote job id -> polls that found it); ``in_flight`` /
        ``peak_in_flight`` (async concurrency slots per label); ``rejected_429`` (429s per
        label; a key means a 429 was issued); ``peak_in_flight_after_first_429`` (highest
        in-flight count right after a submit accepted after that label's first 429; 0 if
        none); ``peak_sync_in_flight``; ``requests`` (API requests, not ``/_fake``);
        ``responses_by_status``; ``errors`` (401/402/429/529 and all ``5xx``);
        ``dropped_connections`` (closed without an answer, hangs excluded);
        ``hung_requests``; ``faults_fired`` (by kind); ``jobs`` (known, unexpired);
        ``revoked_tokens`` (labels); ``submit_times`` and ``rejected_429_times`` (instants
        on the fake's clock, seconds).
        """
        with self.lock:
            opts = self.options
            self.jobs.sweep(self.now(), opts.complete_after_seconds, opts.job_ttl_seconds)
            s = self.stats
            by_status = dict(s.by_status)
            fivexx = sum(n for code, n in by_status.items() if code.startswith("5"))
            return {
                "balance_usd": round(self.balance, 6),
                "total_charged_usd": round(sum(c.usd for c in self.ledger), 6),
                "charges": len(self.ledger),
                "ledger": [asdict(c) for c in self.ledger],
                "submits_by_operation": dict(s.submits_by_operation),
                "accepted_by_operation": dict(s.accepted_by_operation),
                "submits_by_client_job": dict(s.submits_by_client_job),
                "charges_by_client_job": dict(s.charges_by_client_job),
                "polls_by_job": dict(s.polls_by_job),
                "polls_by_client_job": dict(s.polls_by_client_job),
                "in_flight": self.jobs.in_flight_by_owner(),
                "peak_in_flight": dict(s.peak_in_flight),
                "rejected_429": dict(s.rejected_429),
                "peak_in_flight_after_first_429": {
                    label: s.peak_after_first_429[label] for label in s.rejected_429
                },
                "peak_sync_in_flight": dict(s.peak_sync),
                "requests": s.requests,
                "responses_by_status": by_status,
                "errors": {code: by_status.get(code, 0) for code in ("401", "402", "429", "529")}
                | {"5xx": fivexx},
                "dropped_connections": s.dropped,
                "hung_requests": s.hung,
                "faults_fired": dict(s.faults),
                "jobs": len(self.jobs.jobs),
                "revoked_tokens": sorted(self._revoked),
                "submit_times": list(s.submit_times),
                "rejected_429_times": list(s.rejected_429_times),
            }
