"""Dead letter queue: the seed report's scenarios and every DLQ operation, on every backend."""

from __future__ import annotations

import csv
import io
import json

import pytest

from genqueue import (
    App,
    DeadLetterNotFound,
    DLQFilter,
    ErrorKind,
    FakeClock,
    InvalidInput,
    InvalidJobId,
    JobNotFound,
    JobState,
    RedriveRefused,
)
from genqueue.backends.base import day_of
from tests.conformance.helpers import Recorder, make_dead
from tests.conftest import drain

DAY = 24 * 3600.0


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status} for job 7")
        self.status = status


@pytest.fixture
def flaky(app: App) -> dict[str, int]:
    """A task that fails with a 500 until ``state['ok']`` is set."""
    state = {"ok": 0, "calls": 0}

    @app.task("gen")
    async def gen(ctx):  # type: ignore[no-untyped-def]
        state["calls"] += 1
        if not state["ok"]:
            raise HttpError(500)
        return {"image": "cat.png"}

    return state


async def kill(app: App, clock: FakeClock, **enqueue) -> str:  # type: ignore[no-untyped-def]
    """Enqueue a 'gen' job and run it until it is dead (default policy: 1 retry)."""
    job = await app.enqueue("gen", {"prompt": "a cat"}, **enqueue)
    await drain(app)
    clock.advance(5)
    await drain(app)
    return job.id


async def test_dlq_move_keeps_full_context(app: App, clock: FakeClock, flaky) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock, user_id="deleted-user-42")
    entry = await app.dlq.get(job_id)
    assert entry.job_id == job_id and entry.user_id == "deleted-user-42"
    assert (
        entry.task == "gen" and entry.queue == "default" and entry.job.data == {"prompt": "a cat"}
    )
    assert (
        entry.reason == "retries exhausted (1 of 1 used)" and entry.error_kind is ErrorKind.SERVER
    )
    assert entry.failed_at == clock.now() and entry.expires_at == clock.now() + 7 * DAY
    assert entry.retry_attempts == 1 and entry.redrive_count == 0
    error = entry.job.last_error
    assert error is not None and error.message == "HTTP 500 for job 7"
    assert error.type.endswith("HttpError") and "Traceback" in (error.stack or "")
    assert len(entry.history) == 2 and all(a.error for a in entry.history)
    assert len(entry.fingerprint) == 16
    public = entry.to_public()
    assert public["original_job"] == {"id": job_id, "task": "gen", "data": {"prompt": "a cat"}}
    assert public["last_error"]["stack"] and public["failure_reason"] == entry.reason
    json.dumps(public)  # JSON-ready


async def test_dlq_move_is_atomic_with_the_state_change(app: App, clock: FakeClock, flaky) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock)
    assert (await app.get(job_id)).state is JobState.DEAD
    assert await app.dlq.count() == 1


async def test_list_newest_first_with_pagination(app: App) -> None:
    ids = await make_dead(app, 25)
    seen, cursor = [], None
    while True:
        page = await app.dlq.list(cursor=cursor, limit=10)
        seen += [e.job_id for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidInput):
        await app.dlq.list(limit=0)
    with pytest.raises(InvalidInput, match="cursor"):
        await app.dlq.list(cursor="%%%garbage")


async def test_list_pages_default_to_100_entries(app: App) -> None:
    ids = await make_dead(app, 130)
    page = await app.dlq.list()
    assert len(page.items) == 100 and page.next_cursor is not None
    rest = await app.dlq.list(cursor=page.next_cursor)
    assert len(rest.items) == 30 and rest.next_cursor is None
    assert [e.job_id for e in page.items + rest.items] == list(reversed(ids))


async def test_filters_take_plain_strings(app: App) -> None:
    auth = await make_dead(app, 2, kind=ErrorKind.AUTH, message="bad key")
    await make_dead(app, 3, kind=ErrorKind.SERVER)
    by_text = DLQFilter(error_kind="auth")
    assert by_text == DLQFilter(error_kind=ErrorKind.AUTH)
    assert by_text.error_kind is ErrorKind.AUTH
    assert {e.job_id for e in (await app.dlq.list(by_text)).items} == set(auth)
    assert await app.dlq.count(DLQFilter(error_kind="server")) == 3
    with pytest.raises(ValueError, match="invalid error_kind 'auht'; valid kinds: auth, ") as info:
        DLQFilter(error_kind="auht")
    assert isinstance(info.value, InvalidInput) and info.value.field == "error_kind"
    assert "worker_lost" in str(info.value)


async def test_filters(app: App, clock: FakeClock) -> None:
    a = await make_dead(app, 3, user_id="alice", kind=ErrorKind.AUTH, task="a", message="bad key")
    t = await app.backend.time()
    b = await make_dead(
        app, 2, user_id="bob", kind=ErrorKind.SERVER, task="b", message="HTTP 503", offset=10
    )
    assert {e.job_id for e in (await app.dlq.list(DLQFilter(user_id="alice"))).items} == set(a)
    assert {
        e.job_id for e in (await app.dlq.list(DLQFilter(error_kind=ErrorKind.SERVER))).items
    } == set(b)
    assert {e.job_id for e in (await app.dlq.list(DLQFilter(task="a"))).items} == set(a)
    fp = (await app.dlq.get(b[0])).fingerprint
    assert {e.job_id for e in (await app.dlq.list(DLQFilter(fingerprint=fp))).items} == set(b)
    assert await app.dlq.count(DLQFilter(since=t + 5)) == 2
    assert await app.dlq.count(DLQFilter(until=t + 5)) == 3
    assert await app.dlq.count(DLQFilter(user_id="alice", error_kind=ErrorKind.SERVER)) == 0


async def test_get_by_id_and_missing_entry(app: App) -> None:
    [job_id] = await make_dead(app, 1)
    assert (await app.dlq.get(job_id)).job_id == job_id
    with pytest.raises(DeadLetterNotFound, match="no dead letter entry for job " + "f" * 32):
        await app.dlq.get("f" * 32)
    with pytest.raises(InvalidJobId):
        await app.dlq.get("nope")


async def test_redrive_resets_retry_count_and_keeps_history(
    app: App, clock: FakeClock, flaky
) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock)
    recorder = Recorder(app)
    job = await app.dlq.redrive(job_id)
    assert job.state is JobState.QUEUED and job.retry_count == 0 and job.redrive_count == 1
    assert len(job.history) == 2
    with pytest.raises(DeadLetterNotFound):
        await app.dlq.get(job_id)
    assert recorder.of("dlq_retry")[0]["job_id"] == job_id
    flaky["ok"] = 1
    await drain(app)
    done = await app.get(job_id)
    assert done.state is JobState.COMPLETED and len(done.history) == 3


async def test_redrive_then_fail_again_updates_one_entry(app: App, clock: FakeClock, flaky) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock)
    await app.dlq.redrive(job_id)
    await drain(app)
    clock.advance(5)
    await drain(app)
    entry = await app.dlq.get(job_id)
    assert entry.redrive_count == 1 and entry.retry_attempts == 1 and len(entry.history) == 4
    assert await app.dlq.count() == 1


async def test_redrive_limit(app: App, clock: FakeClock, flaky) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock)
    for _ in range(3):
        await app.dlq.redrive(job_id)
        await drain(app)
        clock.advance(5)
        await drain(app)
    with pytest.raises(RedriveRefused, match="redriven 3 times already; the limit is 3"):
        await app.dlq.redrive(job_id)
    assert (await app.dlq.get(job_id)).redrive_count == 3


async def test_redrive_missing_entry_is_a_clear_error(app: App) -> None:
    with pytest.raises(DeadLetterNotFound):
        await app.dlq.redrive("a" * 32)


async def test_bulk_redrive_by_filter_with_dry_run_and_cap(app: App) -> None:
    a = await make_dead(app, 30, user_id="alice")
    await make_dead(app, 5, user_id="bob")
    dry = await app.dlq.redrive_many(filter=DLQFilter(user_id="alice"), dry_run=True, sample_size=3)
    assert dry.matched == 30 and len(dry.redriven) == 30 and len(dry.sample) == 3
    assert await app.dlq.count() == 35
    capped = await app.dlq.redrive_many(filter=DLQFilter(user_id="alice"), limit=10)
    assert len(capped.redriven) == 10
    rest = await app.dlq.redrive_many(filter=DLQFilter(user_id="alice"))
    assert len(rest.redriven) == 20 and set(capped.redriven + rest.redriven) == set(a)
    assert await app.dlq.count() == 5
    jobs = [await app.get(i) for i in a]
    assert all(j.state is JobState.QUEUED and j.redrive_count == 1 for j in jobs)


async def test_bulk_redrive_by_ids_reports_missing(app: App) -> None:
    ids = await make_dead(app, 3)
    report = await app.dlq.redrive_many([*ids, "b" * 32])
    assert sorted(report.redriven) == sorted(ids)
    assert report.refused == {"b" * 32: "not found in the dead letter queue"}


async def test_redriving_jobs_that_share_an_idempotency_key_revives_one(
    app: App, clock: FakeClock, flaky
) -> None:  # type: ignore[no-untyped-def]
    # Found by the model test (tests/model): Redis redrove every dead job of one call that
    # shared a key, leaving several pending jobs holding one idempotency key.
    first = await kill(app, clock, idempotency_key="k")
    second = await kill(app, clock, idempotency_key="k")  # the first is dead: the key is free
    assert first != second
    report = await app.dlq.redrive_many([first, second])
    assert report.redriven == [first]
    assert report.refused[second].startswith("another pending job holds its idempotency key")
    assert (await app.get(second)).state is JobState.DEAD
    assert (await app.enqueue("gen", {"prompt": "a cat"}, idempotency_key="k")).id == first


async def test_delete_one_and_many(app: App) -> None:
    ids = await make_dead(app, 4)
    recorder = Recorder(app)
    await app.dlq.delete(ids[0])
    with pytest.raises(JobNotFound):
        await app.get(ids[0])
    with pytest.raises(DeadLetterNotFound):
        await app.dlq.delete(ids[0])
    assert sorted(await app.dlq.delete_many([*ids[1:], "c" * 32])) == sorted(ids[1:])
    assert await app.dlq.count() == 0
    # One event per deleted entry, carrying its job_id like every other DLQ event.
    events = recorder.of("dlq_delete")
    assert events[0]["job_id"] == ids[0]
    assert sorted(e["job_id"] for e in events[1:]) == sorted(ids[1:])
    assert all("job_ids" not in e and e["purge"] is False for e in events)


async def test_purge_by_filter_and_age(app: App) -> None:
    t0 = await app.backend.time()
    old = await make_dead(app, 5, user_id="old")
    await make_dead(app, 5, user_id="new", offset=10)
    recorder = Recorder(app)
    assert await app.dlq.purge(DLQFilter(user_id="old"), dry_run=True) == 5
    assert recorder.of("dlq_delete") == []
    assert await app.dlq.purge(DLQFilter(user_id="old")) == 5
    assert sorted(e["job_id"] for e in recorder.of("dlq_delete")) == sorted(old)
    assert all(e["purge"] is True for e in recorder.of("dlq_delete"))
    assert await app.dlq.purge(DLQFilter(until=t0 + 12)) == 2
    assert await app.dlq.count() == 3
    assert await app.dlq.purge() == 3


async def test_export_jsonl_and_csv(app: App) -> None:
    ids = await make_dead(app, 3, data={"prompt": 'quote " and, comma'})
    out = io.StringIO()
    assert await app.dlq.export(out, format="jsonl") == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {line["job_id"] for line in lines} == set(ids)
    assert lines[0]["original_job"]["data"] == {"prompt": 'quote " and, comma'}
    out = io.StringIO()
    assert await app.dlq.export(out, format="csv", filter=DLQFilter(user_id="u1")) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 3 and json.loads(rows[0]["data"]) == {"prompt": 'quote " and, comma'}
    assert rows[0]["error_kind"] == "server"


async def test_stats(app: App) -> None:
    await make_dead(app, 3, user_id="alice", kind=ErrorKind.AUTH, task="a", message="bad key")
    await make_dead(
        app, 2, user_id="bob", kind=ErrorKind.SERVER, task="b", message="HTTP 503 id 1", offset=10
    )
    await make_dead(
        app, 1, user_id=None, kind=ErrorKind.SERVER, task="b", message="HTTP 503 id 2", offset=20
    )
    stats = await app.dlq.stats()
    assert stats.total == 6
    assert stats.by_kind == {"auth": 3, "server": 3}
    assert stats.by_task == {"a": 3, "b": 3}
    assert stats.by_user == {"alice": 3, "bob": 2, "(none)": 1}
    assert sum(stats.by_day.values()) == 6
    top = stats.top_fingerprints
    assert [(g.count, g.error_kind) for g in top] == [(3, "auth"), (3, "server")] or [
        (g.count, g.error_kind) for g in top
    ] == [(3, "server"), (3, "auth")]
    assert {g.sample_message for g in top} == {"bad key", "HTTP 503 id 1", "HTTP 503 id 2"} & {
        g.sample_message for g in top
    }
    filtered = await app.dlq.stats(DLQFilter(user_id="bob"))
    assert filtered.total == 2


async def test_stats_count_entries_per_utc_day(app: App) -> None:
    now = await app.backend.time()
    await make_dead(app, 2)
    await make_dead(app, 1, offset=DAY + 5)
    await make_dead(app, 3, offset=-DAY)
    by_day = (await app.dlq.stats()).by_day
    assert by_day == {day_of(now - DAY): 3, day_of(now): 2, day_of(now + DAY + 5): 1}
    assert list(by_day) == sorted(by_day)


async def test_search_failure_text(app: App) -> None:
    """Text search reads the newest entries matching the filter, newest first, pages with
    a cursor, and says how many entries it read."""
    old = await make_dead(app, 3, user_id="ann", message="GPU melted", offset=-1000)
    await make_dead(app, 10, user_id="ann", message="quota exceeded")
    await make_dead(app, 4, user_id="bob", message="gpu melted", offset=100)  # the newest
    page = await app.dlq.search("gpu", DLQFilter(user_id="ann"))
    assert [e.job_id for e in page.items] == old[::-1]  # newest first, case ignored
    assert (page.scanned, page.next_cursor) == (13, None)  # read everything of ann's
    assert len((await app.dlq.search("Test FAILURE")).items) == 17  # the reason matches too
    first = await app.dlq.search("melted", limit=5)
    assert len(first.items) == 5 and first.scanned == 15  # bob's 4, 10 quota, ann's newest
    rest = await app.dlq.search("melted", cursor=first.next_cursor, limit=5)
    assert [e.job_id for e in rest.items] == old[:2][::-1] and rest.next_cursor is None
    assert rest.scanned == 2  # not a full page: everything after the cursor was read
    bounded = await app.dlq.search("melted", DLQFilter(user_id="ann"), scan=10)
    assert bounded.items == [] and bounded.scanned == 10 and bounded.next_cursor
    resumed = await app.dlq.search("melted", DLQFilter(user_id="ann"), cursor=bounded.next_cursor)
    assert [e.job_id for e in resumed.items] == old[::-1] and resumed.scanned == 3
    await make_dead(app, 1, message="Échec du rendu")
    assert len((await app.dlq.search("éCHEC")).items) == 1  # beyond ASCII too
    with pytest.raises(InvalidInput):
        await app.dlq.search("  ")


async def test_groups_with_every_filter(app: App) -> None:
    """Fingerprint groups agree with ``stats`` whatever narrows them: on SQLite a filter
    matching many entries is grouped from an index alone, a few through their rows."""
    await make_dead(app, 10, user_id="alice", kind=ErrorKind.AUTH, task="a", message="bad key")
    await make_dead(app, 1, user_id="carol", kind=ErrorKind.AUTH, task="b", message="bad key")
    outage = "upstream 503"
    await make_dead(app, 5, user_id="bob", kind=ErrorKind.SERVER, task="b", message=outage)
    await make_dead(app, 3, user_id="bob", kind=ErrorKind.SERVER, task="c", message=outage)
    await make_dead(app, 60, user_id="zed", kind=ErrorKind.VALIDATION, task="z", message="long")

    def shape(groups: list) -> list[tuple[int, str, str, list[str]]]:  # type: ignore[type-arg]
        return [(g.count, g.error_kind, g.sample_message, g.tasks) for g in groups]

    auth = (11, "auth", "bad key", ["a", "b"])
    server = (8, "server", outage, ["b", "c"])
    expected = {
        DLQFilter(): [(60, "validation", "long", ["z"]), auth, server],
        DLQFilter(error_kind="auth"): [auth],  # 11 of 79 entries
        DLQFilter(user_id="bob"): [server],
        DLQFilter(user_id="bob", task="c"): [(3, "server", outage, ["c"])],
        DLQFilter(task="b"): [(5, "server", outage, ["b"]), (1, "auth", "bad key", ["b"])],
        DLQFilter(error_kind="auth", task="b", queue="dlqtest"): [(1, "auth", "bad key", ["b"])],
    }
    server_print = (await app.dlq.stats(DLQFilter(user_id="bob"))).top_fingerprints[0].fingerprint
    expected[DLQFilter(fingerprint=server_print)] = [server]  # 8 of 79 entries
    for flt, groups in expected.items():
        assert shape(await app.dlq.groups(flt)) == groups, flt
        assert shape((await app.dlq.stats(flt)).top_fingerprints) == groups, flt
    assert shape(await app.dlq.groups(top=1)) == [(60, "validation", "long", ["z"])]


async def test_two_field_filters_page_across_queues_newest_first(app: App) -> None:
    """Entries of three queues that match two fields come back as one list, newest first
    (ties by id), page after page, and counted; on Redis each queue's index is scanned on
    its own (dlq_scan, every queue in its own Cluster slot) and the scans are merged."""
    wanted = DLQFilter(user_id="ann", task="t")
    matching: list[str] = []
    for i, queue in enumerate(("q1", "q2", "q3")):
        kw = {"queue": queue, "step": 2.0}
        matching += await make_dead(app, 4, user_id="ann", task="t", offset=i * 0.5, **kw)
        await make_dead(app, 6, user_id="ann", task="u", offset=i * 0.5 + 0.1, **kw)
        await make_dead(app, 3, user_id="bob", task="t", offset=i * 0.5 + 0.2, **kw)
    times = {job_id: (await app.dlq.get(job_id)).failed_at for job_id in matching}
    expected = sorted(matching, key=lambda job_id: (times[job_id], job_id), reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = await app.dlq.list(wanted, cursor=cursor, limit=5)
        seen += [e.job_id for e in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    assert await app.dlq.count(wanted) == 12
    assert await app.dlq.count(DLQFilter(user_id="ann", task="t", queue="q2")) == 4


async def test_seven_day_retention_is_enforced(app: App, clock: FakeClock, flaky) -> None:  # type: ignore[no-untyped-def]
    job_id = await kill(app, clock)
    clock.advance(7 * DAY - 1)
    await drain(app)
    assert (await app.dlq.get(job_id)).job_id == job_id
    recorder = Recorder(app)
    clock.advance(1)
    await drain(app)
    with pytest.raises(DeadLetterNotFound):
        await app.dlq.get(job_id)
    with pytest.raises(JobNotFound):
        await app.get(job_id)
    assert recorder.of("dlq_expired") == [{"count": 1, "job_ids": [job_id]}]


async def test_expire_runs_from_the_api_too(app: App, clock: FakeClock) -> None:
    await make_dead(app, 3, step=0)
    clock.advance(7 * DAY + 1)
    assert await app.dlq.expire() == 3


async def test_entries_of_every_kind_expire_when_due_and_not_before(
    app: App, clock: FakeClock
) -> None:
    server = await make_dead(app, 5, kind=ErrorKind.SERVER, step=10)
    auth = await make_dead(app, 5, kind=ErrorKind.AUTH, step=10, offset=5)
    timeout = await make_dead(app, 3, kind=ErrorKind.TIMEOUT, step=10, offset=2, queue="q2")
    clock.advance(7 * DAY + 26)  # due: failed at +0, +10, +20 / +5, +15, +25 / all three
    due = set(server[:3] + auth[:3] + timeout)
    taken: list[str] = []
    while batch := await app.backend.dlq_expire(2):
        assert len(batch) <= 2
        taken += batch
    assert len(taken) == len(set(taken)) and set(taken) == due
    left = await app.dlq.list(limit=100)
    assert {e.job_id for e in left.items} == set(server[3:] + auth[3:])
    clock.advance(20)
    assert await app.dlq.expire() == 4
    assert await app.dlq.count() == 0


async def test_ten_thousand_entries(app: App) -> None:
    ids = await make_dead(app, 10_050, step=0.01)
    assert await app.dlq.count() == 10_050
    assert (await app.dlq.get(ids[5000])).job_id == ids[5000]
    page = await app.dlq.list(limit=1000)
    assert len(page.items) == 1000 and page.next_cursor
    out = io.StringIO()
    assert await app.dlq.export(out) == 10_050
    report = await app.dlq.redrive_many(filter=DLQFilter(), dry_run=True)
    assert report.matched == 10_050
    assert await app.dlq.purge() == 10_050
