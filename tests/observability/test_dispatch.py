"""The Notifications facade, the log notifier and the notification model."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from genqueue import FakeClock, JsonFormatter
from genqueue.errors import InvalidInput
from genqueue.observability.notify import (
    DeliveryOutcome,
    LogNotifier,
    Notification,
    Notifications,
    NotifySettings,
    NotifyTarget,
    RetrySchedule,
    notification_id,
)
from tests.observability.receiver import SECRET, ScriptedReceiver, Sleeps, spec_verify

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecrettokenXXXX"


def make(severity: str = "warning", status: str = "firing", **changes: object) -> Notification:
    options: dict[str, object] = {
        "kind": "alert",
        "status": status,
        "severity": severity,
        "title": "Retry rate above 50 %",
        "summary": "61 % of 200 jobs retried in 15 min",
        "fields": {"rate": 0.61, "sample": 200},
        "at": 1_800_000_000.0,
        **changes,
    }
    return Notification.create(**options)  # type: ignore[arg-type]


def targets(*specs: tuple[str, str, str]) -> NotifySettings:
    out = []
    for name, kind, minimum in specs:
        url = SLACK_URL if kind == "slack" else f"https://{name}.example.com/hook"
        secret = SECRET if kind == "webhook" else None
        out.append(NotifyTarget(name, kind, url, secret, minimum))  # type: ignore[arg-type]
    return NotifySettings(tuple(out))


# -- the facade ---------------------------------------------------------------------------


async def test_dispatch_goes_to_the_log_and_to_targets_whose_min_severity_is_met() -> None:
    receiver = ScriptedReceiver()
    settings = targets(("all", "webhook", "info"), ("pager", "slack", "critical"))
    clock = FakeClock()
    notifications = Notifications(settings, clock=clock, client=receiver.client())

    warning = await notifications.dispatch(make("warning"))
    assert [(r.target, r.outcome.value) for r in warning] == [
        ("log", "delivered"),
        ("all", "delivered"),
        ("pager", "skipped"),
    ]
    assert warning[2].error == "below min_severity critical"
    critical = await notifications.dispatch(make("critical"))
    assert [r.outcome for r in critical] == [DeliveryOutcome.DELIVERED] * 3
    assert len(receiver.requests) == 3
    webhook_requests = [r for r in receiver.requests if "webhook-id" in r.headers]
    assert len(webhook_requests) == 2
    for request in webhook_requests:
        spec_verify(SECRET, request.headers, request.body, now=clock.now())


async def test_targets_off_in_the_settings_are_skipped() -> None:
    off = NotifyTarget("off", "slack", SLACK_URL, enabled=False)  # type: ignore[arg-type]
    receiver = ScriptedReceiver()
    notifications = Notifications(NotifySettings((off,)), client=receiver.client())
    [_, result] = await notifications.dispatch(make("critical"))
    assert result.outcome is DeliveryOutcome.SKIPPED and result.error == "off in the settings"
    [_, tested] = await notifications.send_test()
    assert tested.outcome is DeliveryOutcome.SKIPPED
    assert receiver.requests == []


async def test_targets_are_sent_to_concurrently() -> None:
    arrived: list[str] = []
    both = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        arrived.append(request.url.host)
        if len(arrived) == 2:
            both.set()
        # Sequential sending would wait here forever; the guard only turns that into a 500.
        try:
            await asyncio.wait_for(both.wait(), timeout=10)
        except TimeoutError:
            return httpx.Response(500)
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = targets(("a", "webhook", "info"), ("b", "webhook", "info"))
    once = NotifySettings(settings.targets, RetrySchedule(delays=()))
    notifications = Notifications(once, client=client)
    results = await notifications.dispatch(make())
    assert [r.ok for r in results] == [True, True, True]
    assert sorted(arrived) == ["a.example.com", "b.example.com"]


async def test_a_failing_or_broken_target_never_raises_into_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "broken.example.com":
            raise RuntimeError("a bug in a transport")
        if request.url.host == "down.example.com":
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = targets(
        ("broken", "webhook", "info"), ("down", "webhook", "info"), ("fine", "webhook", "info")
    )
    notifications = Notifications(settings, client=client, sleep=Sleeps())
    with caplog.at_level(logging.WARNING, logger="genqueue.notify"):
        results = await notifications.dispatch(make())
    outcomes = {r.target: (r.outcome.value, r.error) for r in results}
    assert outcomes["broken"] == ("failed", "RuntimeError")
    assert outcomes["down"] == ("failed", "ConnectError: refused")
    assert outcomes["fine"] == ("delivered", None)
    assert "notify target broken failed unexpectedly" in caplog.text


async def test_send_test_reaches_targets_whatever_their_min_severity() -> None:
    receiver = ScriptedReceiver()
    notifications = Notifications(targets(("pager", "slack", "critical")), client=receiver.client())
    results = await notifications.send_test()
    assert [r.outcome.value for r in results] == ["delivered", "delivered"]
    assert receiver.requests[0].json()["text"].startswith("[TEST] genqueue test notification")


async def test_the_owned_client_is_closed() -> None:
    notifications = Notifications(targets(("a", "slack", "info")))
    notifier = notifications.notifier(notifications.targets[0])
    assert notifier is notifications.notifier(notifications.targets[0])
    client = notifications._client
    assert client is not None and not client.is_closed
    async with notifications:
        pass
    assert client.is_closed


# -- the log --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "status", "level"),
    [
        ("critical", "firing", logging.WARNING),
        ("warning", "repeat", logging.WARNING),
        ("info", "firing", logging.INFO),
        ("critical", "resolved", logging.INFO),
    ],
)
async def test_the_log_record_is_structured(
    severity: str, status: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    notification = make(severity, status)
    with caplog.at_level(logging.DEBUG, logger="genqueue.notify"):
        result = await LogNotifier().send(notification)
    assert result.ok and result.target == "log"
    [record] = caplog.records
    assert record.name == "genqueue.notify" and record.levelno == level
    assert record.event == "notification"  # type: ignore[attr-defined]
    assert record.fields == notification.to_dict()  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "notification" and line["title"] == "Retry rate above 50 %"
    assert line["fields"] == {"rate": 0.61, "sample": 200}


# -- the model ------------------------------------------------------------------------------


def test_a_notification_is_json_and_immutable() -> None:
    notification = make(command="genqueue dlq list --fingerprint abc123", link="https://x.example/")
    data = json.loads(json.dumps(notification.to_dict()))
    assert data == {
        "id": notification.id,
        "kind": "alert",
        "status": "firing",
        "severity": "warning",
        "title": "Retry rate above 50 %",
        "summary": "61 % of 200 jobs retried in 15 min",
        "fields": {"rate": 0.61, "sample": 200},
        "at": "2027-01-15T08:00:00.000Z",
        "link": "https://x.example/",
        "command": "genqueue dlq list --fingerprint abc123",
    }
    assert notification.id.startswith("ntf_")
    with pytest.raises(TypeError):
        notification.fields["x"] = 1  # type: ignore[index]
    fields = {"a": 1}
    copied = make(fields=fields)
    fields["a"] = 2
    assert copied.fields["a"] == 1


def test_stable_ids() -> None:
    assert notification_id("dlq_size", "firing", 1.5) == notification_id("dlq_size", "firing", 1.5)
    assert notification_id("dlq_size", "firing", 1.5) != notification_id(
        "dlq_size", "resolved", 1.5
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "email"}, "kind"),
        ({"status": "burning"}, "status"),
        ({"severity": "meh"}, "severity"),
        ({"title": "  "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"id": "has.dot"}, "id"),
        ({"fields": {"job": {"data": 1}}}, "fields"),
        ({"fields": {f"k{i}": i for i in range(21)}}, "fields"),
        ({"fields": {"nan": float("nan")}}, "fields"),
        ({"link": "javascript:alert(1)"}, "link"),
        ({"link": "https://x.example/a b"}, "link"),
        ({"at": float("inf")}, "at"),
    ],
)
def test_invalid_notifications_are_refused(changes: dict[str, object], field: str) -> None:
    options: dict[str, object] = {
        "id": "ntf_x",
        "kind": "alert",
        "status": "firing",
        "severity": "info",
        "title": "t",
        "at": 0.0,
        **changes,
    }
    with pytest.raises(InvalidInput) as info:
        Notification(**options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_long_field_values_are_cut() -> None:
    notification = make(fields={"sample": "x" * 900})
    assert len(str(notification.fields["sample"])) == 500
