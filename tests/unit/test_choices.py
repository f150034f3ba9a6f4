"""Enum-typed filters and options take plain strings; a wrong one lists the valid values."""

from __future__ import annotations

import pytest

from genqueue import (
    App,
    ClassifierRules,
    DLQFilter,
    ErrorKind,
    EventName,
    Events,
    InvalidInput,
    JobState,
    TaskError,
)


def test_dlq_filter_error_kind_from_a_string() -> None:
    assert DLQFilter(error_kind="auth").error_kind is ErrorKind.AUTH
    assert DLQFilter(error_kind=ErrorKind.AUTH) == DLQFilter(error_kind="auth")
    with pytest.raises(ValueError, match=r"invalid error_kind 'Auth'; valid kinds: auth, payment"):
        DLQFilter(error_kind="Auth")


async def test_job_states_from_strings() -> None:
    app = App("memory://", strict_tasks=False)
    async with app:
        job = await app.enqueue("t", {})
        assert [j.id for j in (await app.list_jobs(state="queued")).items] == [job.id]
        assert [j.id for j in (await app.list_jobs(state=["queued", JobState.DEAD])).items] == [
            job.id
        ]
        with pytest.raises(InvalidInput, match="invalid state 'sleeping'; valid states: queued"):
            await app.list_jobs(state=["queued", "sleeping"])


def test_event_names_from_strings() -> None:
    events = Events()
    seen: list[str] = []
    events.subscribe(lambda e: seen.append(e.name.value), names=["dlq_delete"])
    events.emit(EventName.DLQ_DELETE, job_id="a")
    events.emit(EventName.DLQ_RETRY, job_id="a")
    assert seen == ["dlq_delete"]
    with pytest.raises(
        InvalidInput, match=r"invalid event 'dlq_deleted'; valid events: .*dlq_delete"
    ):
        events.subscribe(print, names=["dlq_deleted"])


def test_classifier_kinds_from_strings() -> None:
    rules = ClassifierRules.build(kinds={KeyError: "validation"}, retryable=["server"])
    assert rules.kinds == ((KeyError, ErrorKind.VALIDATION),)
    assert rules.retryable == frozenset({ErrorKind.SERVER})
    with pytest.raises(InvalidInput, match="invalid retryable 'servers'; valid kinds"):
        ClassifierRules.build(retryable=["servers"])
    assert TaskError("x", kind="payment").error_kind is ErrorKind.PAYMENT
    with pytest.raises(InvalidInput, match="invalid kind 'paid'"):
        TaskError("x", kind="paid")
