"""Events: the logger, the JSON formatter, subscribers."""

from __future__ import annotations

import json
import logging

import pytest

from genqueue import EventName, Events, JsonFormatter


def test_events_reach_the_logger_with_name_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    with caplog.at_level(logging.INFO, logger="genqueue.events"):
        events.emit(EventName.QUEUE_RETRY, job_id="abc", delay=5.0)
    [record] = caplog.records
    assert record.name == "genqueue.events"
    assert record.event == "queue_retry"  # type: ignore[attr-defined]
    assert record.fields == {"job_id": "abc", "delay": 5.0}  # type: ignore[attr-defined]
    assert "job_id=abc" in record.getMessage()


def test_dlq_moves_log_at_error_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="genqueue.events"):
        Events().emit(EventName.QUEUE_DLQ_MOVE, job_id="x", reason="r")
    assert caplog.records[0].levelno == logging.ERROR


def test_json_formatter_renders_one_object_per_line() -> None:
    record = logging.LogRecord(
        "genqueue.events", logging.INFO, __file__, 1, "queue_retry %s", ("x",), None
    )
    record.event = "queue_retry"
    record.fields = {"job_id": "j1", "delay": 2.5, "odd": object()}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "queue_retry" and parsed["job_id"] == "j1" and parsed["delay"] == 2.5
    assert (
        parsed["level"] == "info"
        and parsed["ts"].endswith("Z")
        and parsed["message"] == "queue_retry x"
    )


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "genqueue", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    parsed = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in parsed["exception"]


def test_subscribers_filter_by_name_and_can_unsubscribe() -> None:
    events = Events()
    seen: list[str] = []
    unsubscribe = events.subscribe(lambda e: seen.append(e.name.value), names=["job_completed"])
    events.emit(EventName.JOB_STARTED, job_id="1")
    events.emit(EventName.JOB_COMPLETED, job_id="1")
    unsubscribe()
    events.emit(EventName.JOB_COMPLETED, job_id="2")
    assert seen == ["job_completed"]


def test_a_broken_subscriber_does_not_break_emit(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    seen: list[str] = []
    events.subscribe(broken)
    events.subscribe(lambda e: seen.append(e.name.value))
    with caplog.at_level(logging.ERROR):
        events.emit(EventName.JOB_STARTED, job_id="1")
    assert seen == ["job_started"]
    assert "subscriber" in caplog.text
