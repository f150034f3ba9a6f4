"""Stateful model test: random sequences of queue operations on every backend, checked
step by step against the reference model in ``model.py``.

Rules drive the library the way a worker and an operator do (enqueue, fetch under a
lease, run an attempt that completes or fails with any error kind, snooze, Retry/Cancel
signals, heartbeats, running updates, lease expiry and reclaim, promotion, DLQ redrive,
delete, purge, retention), all under a fake clock. After every step the invariants
compare everything stored with the model: each job's state, counters and history, the
DLQ (exactly the dead jobs, newest first), the counts, and that no job was lost.

The default hypothesis profile (tests/conftest.py) is small and derandomized for CI;
``pytest tests/model --hypothesis-profile=deep`` explores far longer sequences.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from genqueue import (
    DeadLetterNotFound,
    DLQFilter,
    ErrorKind,
    IllegalTransition,
    Job,
    JobRequest,
    JobState,
    RedriveRefused,
    RedriveReport,
)
from genqueue.backends.base import Lease
from tests.model import model
from tests.model.harness import (
    OTHER_TASK,
    QUEUES,
    TASK,
    WORKER_ID,
    Behaviour,
    System,
    remote_id,
)
from tests.model.invariants import Invariants, paginate
from tests.model.model import DELAYED, PENDING, Model

_DEEP = settings.default.max_examples > 100
# The deep profile runs for as long as it takes; the default one takes well under a minute,
# but shrinking a failure can take minutes (hypothesis stops shrinking after five).
pytestmark = pytest.mark.timeout(0 if _DEEP else 600)

queues = st.sampled_from(QUEUES)
delays = st.sampled_from([0.0, 0.0, 10.0, 100.0])
max_retries = st.sampled_from([0, 0, 1, 2])
tasks = st.sampled_from([TASK, OTHER_TASK])
users = st.sampled_from([None, "u1", "u2"])
keys = st.sampled_from([None, None, "k1", "k1", "k2"])  # keys collide often
# A flat list (failures most of it): sampled_from spreads choices evenly over it.
behaviours = st.sampled_from(
    [
        Behaviour("complete"),
        Behaviour("complete"),
        *(Behaviour("fail", kind) for kind in ErrorKind),
        Behaviour("fail", ErrorKind.RATE_LIMITED, 100.0),  # Retry-After above the backoff
        Behaviour("fail", ErrorKind.SERVER, 20.0),
        Behaviour("fail", ErrorKind.AUTH, 20.0),
        Behaviour("retry"),
        Behaviour("retry", delay=7.0),
        Behaviour("snooze", delay=0.0),
        Behaviour("snooze", delay=15.0),
        Behaviour("cancel"),
        Behaviour("release"),
    ]
)
# (what, value): how to select dead letter entries for bulk redrive and purge.
filters = st.sampled_from(
    [
        ("all", None),
        ("queue", "a"),
        ("kind", ErrorKind.SERVER),
        ("kind", ErrorKind.WORKER_LOST),
        ("kind", ErrorKind.AUTH),
        ("older", 100.0),
        ("newer", 100.0),
        ("user", "u1"),
        ("task", OTHER_TASK),
    ]
)


class QueueMachine(Invariants):
    def __init__(self, kind: str, directory: Path) -> None:
        super().__init__()
        self.kind = kind
        self.sys = System(kind, directory)
        self.model = Model()
        #: Jobs as fetched by the (single, simulated) worker: their lease may be long lost.
        self.held: list[Job] = []
        self.shared_keys = 0

    def teardown(self) -> None:
        # Steer generation towards dead jobs that share an idempotency key: redriving them
        # together is where a backend must let only one take the key.
        target(float(self.shared_keys), label="dead jobs sharing a key")
        self.sys.close()

    def _target(self, data: st.DataObject) -> str:
        """Mostly a dead job; sometimes any job, or one that is gone."""
        dead = [j.id for j in self.model.jobs.values() if j.state is JobState.DEAD]
        known = [*self.model.jobs, *self.model.gone]  # in a replayable order
        pool = dead if dead and data.draw(st.integers(0, 3), label="dead?") else known
        return data.draw(st.sampled_from(pool), label="job")

    def _filter(self, spec: tuple[str, Any]) -> tuple[DLQFilter, list[str]]:
        """The DLQ filter of ``spec`` and the ids the model says it matches, newest first."""
        what, value = spec
        if what == "queue":
            flt = DLQFilter(queue=value)
        elif what == "kind":
            flt = DLQFilter(error_kind=value)
        elif what == "older":
            flt = DLQFilter(until=self.now - value)
        elif what == "newer":
            flt = DLQFilter(since=self.now - value)
        elif what == "user":
            flt = DLQFilter(user_id=value)
        elif what == "task":
            flt = DLQFilter(task=value)
        else:
            flt = DLQFilter()
        ids = [
            j.id
            for j in self.model.dead()
            if j.entry is not None
            and (flt.queue is None or j.queue == flt.queue)
            and (flt.error_kind is None or j.entry.kind is flt.error_kind)
            and (flt.until is None or j.entry.failed_at < flt.until)
            and (flt.since is None or j.entry.failed_at >= flt.since)
            and (flt.user_id is None or j.user == flt.user_id)
            and (flt.task is None or j.task == flt.task)
        ]
        return flt, ids

    # -- producers ------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(st.tuples(queues, delays, max_retries, keys, tasks, users), max_size=5)
    )
    def start(self, jobs: list[tuple[str, float, int, str | None, str, str | None]]) -> None:
        for job in jobs:
            self.enqueue(*job)

    @rule(queue=queues, delay=delays, retries=max_retries, key=keys, task=tasks, user=users)
    def enqueue(
        self, queue: str, delay: float, retries: int, key: str | None, task: str, user: str | None
    ) -> None:
        job = self.run(
            self.sys.app.enqueue(
                task,
                {"n": 1},
                queue=queue,
                delay=delay,
                max_retries=retries,
                idempotency_key=key,
                user_id=user,
            )
        )
        self.model.enqueue(job.id, queue, key, delay, retries, self.now, task=task, user=user)

    @precondition(lambda self: any(j.key for j in self.model.jobs.values()))
    @rule(data=st.data(), retries=max_retries)
    def enqueue_again(self, data: st.DataObject, retries: int) -> None:
        """A producer submits again with a job's idempotency key (a client retrying)."""
        keyed = [j for j in self.model.jobs.values() if j.key is not None]
        job = data.draw(st.sampled_from(keyed), label="same key as")
        self.enqueue(job.queue, 0.0, retries, job.key, job.task, job.user)

    @rule(batch=st.lists(st.tuples(queues, keys, users), min_size=1, max_size=3))
    def enqueue_batch(self, batch: list[tuple[str, str | None, str | None]]) -> None:
        # A key always comes with the same data ({"n": 1}, as enqueue() sends): reusing a
        # key with other data is refused (IdempotencyConflict, tested in conformance/).
        requests = [
            JobRequest(TASK, {"n": 1} if k else {"i": i}, queue=q, idempotency_key=k, user_id=u)
            for i, (q, k, u) in enumerate(batch)
        ]
        stored = self.run(self.sys.app.queue.enqueue_many(requests))
        assert len(stored) == len(batch)
        for job, (queue, key, user) in zip(stored, batch, strict=True):
            self.model.enqueue(job.id, queue, key, 0.0, 1, self.now, task=TASK, user=user)

    # -- workers --------------------------------------------------------------------------

    @rule(which=st.sampled_from([["a"], ["b"], QUEUES]), limit=st.integers(1, 3))
    def fetch(self, which: list[str], limit: int) -> None:
        self._fetch(which, limit)

    def _fetch(self, which: list[str], limit: int) -> list[Job]:
        claimed: list[Job] = self.run(
            self.sys.app.backend.fetch(which, WORKER_ID, limit, model.LEASE)
        )
        # Across queues Redis orders by per-process estimates (redis/fanin.py): roughly
        # oldest first, so only the other backends promise the oldest due job exactly.
        exact = len(which) == 1 or not self.kind.startswith("redis")
        self.model.fetch([j.id for j in claimed], which, limit, self.now, oldest_first=exact)
        for job in claimed:
            expected = self.model.jobs[job.id]
            assert job.state is JobState.ACTIVE and job.attempts == expected.attempts
            assert (
                job.lease_owner == WORKER_ID and job.lease_expires_at == expected.lease_expires_at
            )
        self.held.extend(claimed)
        return claimed

    @rule(behaviour=behaviours, report=st.booleans())
    def work(self, behaviour: Behaviour, report: bool) -> None:
        """The worker's usual path: fetch one job and run it at once (waiting for the next
        due job first if none is due, as an idle worker does)."""
        waiting = [j.run_at for j in self.model.jobs.values() if j.state in PENDING]
        if waiting and min(waiting) > self.now:
            self.sys.clock.advance(min(waiting) - self.now)
        for job in self._fetch(QUEUES, 1):
            self.held.remove(job)
            self._attempt(job, replace(behaviour, report=report))

    @precondition(lambda self: self.held)
    @rule(data=st.data(), behaviour=behaviours, report=st.booleans())
    def run_attempt(self, data: st.DataObject, behaviour: Behaviour, report: bool) -> None:
        """Finish a job fetched earlier; its lease may have expired, or moved on."""
        index = data.draw(st.integers(0, len(self.held) - 1), label="held")
        self._attempt(self.held.pop(index), replace(behaviour, report=report))

    def _attempt(self, job: Job, behaviour: Behaviour) -> None:
        if behaviour.action == "release":
            behaviour = replace(behaviour, report=False)  # released before the task ran
        now = self.now
        owned = self.model.owned(job.id, job.attempts)
        live = self.model.live(job.id, job.attempts, now)
        self.run(self.sys.run_attempt(job, behaviour))
        if behaviour.report:
            if live is None:
                # Storing the remote id raised LeaseLost. Unless another attempt took the
                # job, the attempt is recorded as worker_lost with its cost and remote id.
                if owned is not None:
                    owned.remote_job_id = remote_id(job)
                    owned.cost += 1.0
                    self.model.fail(owned, ErrorKind.WORKER_LOST, now)
                return
            live.remote_job_id = remote_id(job)
            live.cost += 1.0
        if owned is None:
            return  # a zombie: whatever it did must have been discarded
        if behaviour.action == "complete":
            self.model.complete(owned, now)
        elif behaviour.action == "fail":
            self.model.fail(owned, behaviour.kind, now, retry_after=behaviour.delay)
        elif behaviour.action == "retry":
            self.model.fail(
                owned, ErrorKind.UNKNOWN, now, signal=True, signal_delay=behaviour.delay
            )
        elif behaviour.action == "release":
            self.model.release(owned, now)
        elif behaviour.action == "snooze":
            self.model.snooze(owned, behaviour.delay or 0.0, now)
        else:
            self.model.cancel_by_task(owned, now)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.held), label="held")
        lost = self.run(self.sys.app.backend.heartbeat([Lease(job.id, job.attempts)], model.LEASE))
        live = self.model.heartbeat(job.id, job.attempts, self.now)
        assert lost == ([] if live else [job.id])

    # Exactly 30 (a lease), 100 (the DLQ age filters), 600 and 900 (retention) hit boundaries.
    @rule(seconds=st.sampled_from([1.0, 5.0, 10.0, 29.0, 30.0, 31.0, 100.0, 300.0, 600.0, 900.0]))
    def advance(self, seconds: float) -> None:
        self.sys.clock.advance(seconds)

    @rule(step=st.sampled_from(["reclaim", "promote", "sweep", "cancel"]), data=st.data())
    def maintain(self, step: str, data: st.DataObject) -> None:
        """A worker's side tasks (reclaim expired leases, promote due jobs, retention), or
        a producer's cancel (here, so that it does not cancel most jobs before they run)."""
        if step == "cancel":
            self._cancel(data)
        else:
            getattr(self, "_" + step)()

    def _reclaim(self) -> None:
        expired = sum(
            1
            for j in self.model.jobs.values()
            if j.state is JobState.ACTIVE and (j.lease_expires_at or 0) <= self.now
        )
        assert self.run(self.sys.worker.reclaim()) == expired
        self.model.reclaim(self.now)

    def _promote(self) -> None:
        due = sum(
            1 for j in self.model.jobs.values() if j.state in DELAYED and j.run_at <= self.now
        )
        assert self.run(self.sys.app.backend.promote(1000)) == due
        self.model.promote(self.now)

    def _sweep(self) -> None:
        self.run(self.sys.worker.sweep())
        self.model.sweep(self.now)

    def _cancel(self, data: st.DataObject) -> None:
        if not self.model.jobs:
            return
        job_id = data.draw(st.sampled_from(list(self.model.jobs)), label="job")
        try:
            self.run(self.sys.app.cancel(job_id))
            cancelled = True
        except IllegalTransition:
            cancelled = False
        assert cancelled == self.model.cancel(job_id, self.now)

    # -- dead letter queue ----------------------------------------------------------------

    @precondition(lambda self: self.model.jobs or self.model.gone)
    @rule(data=st.data(), count=st.integers(1, 3))
    def redrive(self, data: st.DataObject, count: int) -> None:
        """Redrive one job by id, or several in one call."""
        ids = list(dict.fromkeys(self._target(data) for _ in range(count)))
        if len(ids) > 1:
            report = self.run(self.sys.app.dlq.redrive_many(ids))
            dead = [i for i in ids if i in self.model.jobs and self.model.jobs[i].entry]
            assert report.matched == len(dead)
            self._check_report(report, *self.model.redrive(ids, self.now))
            return
        try:
            job = self.run(self.sys.app.dlq.redrive(ids[0]))
            outcome = "redriven"
            assert job.state is JobState.QUEUED
        except DeadLetterNotFound:
            outcome = "not found"
        except RedriveRefused as exc:
            outcome = exc.reason
        done, refused = self.model.redrive(ids, self.now)
        expected = "redriven" if done else refused[ids[0]]
        assert outcome.startswith(expected), (outcome, expected)

    @precondition(lambda self: self.model.dead())
    @rule(spec=filters, limit=st.sampled_from([None, 1, 2]))
    def redrive_many(self, spec: tuple[str, Any], limit: int | None) -> None:
        flt, matching = self._filter(spec)
        report = self.run(self.sys.app.dlq.redrive_many(filter=flt, limit=limit))
        assert report.matched == len(matching)
        self._check_report(
            report, *self.model.redrive(matching[:limit] if limit else matching, self.now)
        )

    @staticmethod
    def _check_report(report: RedriveReport, done: list[str], refused: dict[str, str]) -> None:
        assert report.redriven == done
        assert sorted(report.refused) == sorted(refused)
        for job_id, reason in refused.items():
            assert report.refused[job_id].startswith(reason), (report.refused[job_id], reason)

    @precondition(lambda self: self.model.jobs or self.model.gone)
    @rule(data=st.data())
    def dlq_delete(self, data: st.DataObject) -> None:
        job_id = self._target(data)
        try:
            self.run(self.sys.app.dlq.delete(job_id))
            deleted = True
        except DeadLetterNotFound:
            deleted = False
        job = self.model.jobs.get(job_id)
        assert deleted == (job is not None and job.state is JobState.DEAD)
        if deleted:
            self.model.remove(job_id)

    @precondition(lambda self: self.model.dead())
    @rule(spec=filters)
    def purge(self, spec: tuple[str, Any]) -> None:
        flt, matching = self._filter(spec)
        assert self.run(self.sys.app.dlq.purge(flt)) == len(matching)
        for job_id in matching:
            self.model.remove(job_id)

    # -- reading ----------------------------------------------------------------------------

    @rule(data=st.data(), size=st.integers(1, 4))
    def inspect(self, data: st.DataObject, size: int) -> None:
        """Read what an operator reads, page by page: jobs, or dead letter entries."""
        if self.model.dead() and data.draw(st.booleans(), label="dlq?"):
            self._inspect_dlq(data.draw(filters, label="filter"), size)
        else:
            state = data.draw(st.sampled_from([None, *JobState]), label="state")
            queue = data.draw(st.sampled_from([None, *QUEUES]), label="queue")
            task = data.draw(st.sampled_from([None, OTHER_TASK]), label="task")
            self._list_jobs(state, queue, task, data.draw(users, label="user"), size)

    def _list_jobs(
        self,
        state: JobState | None,
        queue: str | None,
        task: str | None,
        user: str | None,
        size: int,
    ) -> None:
        """Listing by state, queue, task and user, newest first, page by page, misses nothing."""
        pages = paginate(
            lambda c: self.sys.app.queue.list(
                state=state, queue=queue, task=task, user_id=user, cursor=c, limit=size
            )
        )
        got = [j.id for page in self.run(pages) for j in page]
        expected = [
            j
            for j in self.model.jobs.values()
            if (state is None or j.state is state)
            and (queue is None or j.queue == queue)
            and (task is None or j.task == task)
            and (user is None or j.user == user)
        ]
        expected.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        assert got == [j.id for j in expected]

    def _inspect_dlq(self, spec: tuple[str, Any], size: int) -> None:
        """A filtered DLQ listing, its count and its stats agree with the model."""
        flt, matching = self._filter(spec)
        pages = paginate(lambda c: self.sys.app.dlq.list(flt, cursor=c, limit=size))
        assert [e.job_id for page in self.run(pages) for e in page] == matching
        assert self.run(self.sys.app.dlq.count(flt)) == len(matching)
        stats = self.run(self.sys.app.dlq.stats(flt))
        jobs = [self.model.jobs[i] for i in matching]
        kinds = Counter(j.entry.kind.value for j in jobs if j.entry is not None)
        assert stats.total == len(matching) and stats.by_kind == dict(kinds)
        assert stats.cost_lost.get("usd", 0.0) == sum(j.cost for j in jobs)


def test_queue_agrees_with_the_model(backend_kind: str, tmp_path: Path) -> None:
    if backend_kind == "redis":
        from tests.redis_server import session_server

        session_server()  # start it (or skip without redis-server) outside hypothesis
    if backend_kind == "redis-cluster":
        from tests.redis_cluster import session_cluster

        session_cluster()  # likewise
    if backend_kind == "postgres":
        from tests.postgres_server import require_postgres

        require_postgres()  # skip (or fail under CI) outside hypothesis
    run_state_machine_as_test(lambda: QueueMachine(backend_kind, tmp_path))
