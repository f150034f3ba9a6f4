"""The compact stored record of a job, and the per-task retention options."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genqueue import App, ConfigError
from genqueue.classify import ClassifiedError, ErrorKind
from genqueue.job import Attempt, AttemptOutcome, Job, JobState

T0 = 1_800_000_000.0


def completed(**changes: object) -> Job:
    job = Job("a" * 32, "t", T0, T0, state=JobState.COMPLETED, attempts=1)
    job.started_at, job.finished_at, job.updated_at = T0 + 1, T0 + 2, T0 + 2
    job.history = [Attempt(1, T0 + 1, T0 + 2, "w", AttemptOutcome.COMPLETED)]
    for name, value in changes.items():
        setattr(job, name, value)
    return job


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"data": {}, "result": []},
        {"data": 0, "result": False},
        {"data": "", "result": 0.0, "queue": "other", "max_retries": 0},
        {"run_at": T0 + 5, "expires_at": T0 + 60, "cost": {"usd": 0.1}, "meta": {"k": 1}},
        {"state": JobState.CANCELLED, "history": []},
    ],
)
def test_the_compact_record_reads_back_as_the_same_job(changes: dict[str, object]) -> None:
    job = completed(**changes)
    assert Job.from_record(job.to_record()) == job


def test_the_record_leaves_out_defaults_and_shared_times() -> None:
    record = completed(data={}).to_record()
    assert set(record) == {
        "id", "task", "data", "state", "created_at", "updated_at", "attempts", "history",
        "started_at", "finished_at",
    }  # fmt: skip
    assert record["history"] == [{"number": 1, "outcome": "completed", "worker": "w"}]


def test_an_unfinished_job_keeps_its_last_attempts_times() -> None:
    # Its started_at changes with the next fetch: the attempt cannot borrow it.
    error = ClassifiedError(ErrorKind.SERVER, True, "boom", "E", stack="trace")
    job = completed(state=JobState.RETRYING, finished_at=None)
    job.history = [Attempt(1, T0 + 1, T0 + 2, "w", AttemptOutcome.FAILED, error, 5.0)]
    record = job.to_record()
    assert record["history"][0]["started_at"] == T0 + 1
    fetched = Job.from_record({**record, "started_at": T0 + 9, "state": "active"})
    assert fetched.history[0].started_at == T0 + 1
    assert fetched.history[0].error == error


def test_the_public_shape_is_whole() -> None:
    public = completed().to_public()
    assert public["user_id"] is None and public["expires_at"] is None
    assert public["history"][0]["duration"] == 1.0 and public["history"][0]["error"] is None


def test_keep_finished_takes_seconds_or_a_timedelta() -> None:
    app = App("memory://")
    app.task("a", keep_finished=timedelta(hours=1))(lambda ctx: None)
    app.task("b", keep_finished=0)(lambda ctx: None)
    app.task("c", keep_result=False)(lambda ctx: None)
    assert app.keep_finished_for("a") == 3600.0
    assert app.keep_finished_for("b") == 0.0
    assert app.keep_finished_for("c") == app.retention.finished_jobs
    assert app.keep_finished_for("unknown") == app.retention.finished_jobs
    assert (app.keep_result_for("a"), app.keep_result_for("c")) == (True, False)
    for bad in (-1, float("nan"), float("inf"), "1h", True, timedelta(seconds=-1)):
        with pytest.raises(ConfigError, match="keep_finished"):
            app.task(f"bad{id(bad)}", keep_finished=bad)  # type: ignore[arg-type]
