"""Slack incoming-webhook messages: their shape, escaping, and Slack's error answers."""

from __future__ import annotations

import logging

import pytest

from genqueue import FakeClock
from genqueue.observability.notify import (
    DeliveryOutcome,
    Notification,
    SlackNotifier,
    slack_message,
)
from tests.observability.receiver import ScriptedReceiver, Sleeps

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecrettokenXXXX"


def notification(**changes: object) -> Notification:
    options: dict[str, object] = {
        "kind": "alert",
        "status": "firing",
        "severity": "critical",
        "title": "Breaker opened for pixellab",
        "summary": "5 failures in 60 s",
        "fields": {"account": "pixellab:ab12", "failures": 5, "open": True},
        "command": "genqueue breaker list",
        "link": "https://ops.example.com/genqueue/breakers",
        "at": 1_800_000_000.0,
        "id": "ntf_1",
        **changes,
    }
    return Notification.create(**options)  # type: ignore[arg-type]


def test_message_has_text_and_mrkdwn_blocks_with_title_summary_fields_and_command() -> None:
    message = slack_message(notification())
    assert message["text"] == "[FIRING] Breaker opened for pixellab: 5 failures in 60 s"
    head, fields, more, context = message["blocks"]
    assert head["type"] == "section" and head["text"]["type"] == "mrkdwn"
    assert "*FIRING* · critical · *Breaker opened for pixellab*" in head["text"]["text"]
    assert head["text"]["text"].endswith("\n5 failures in 60 s")
    assert fields["type"] == "section"
    assert [f["text"] for f in fields["fields"]] == [
        "*account*\npixellab:ab12",
        "*failures*\n5",
        "*open*\nyes",
    ]
    assert all(f["type"] == "mrkdwn" for f in fields["fields"])
    assert more["text"]["text"] == (
        "See them: `genqueue breaker list`\n"
        "<https://ops.example.com/genqueue/breakers|Open in genqueue>"
    )
    assert context["type"] == "context"
    assert "2027-01-15T08:00:00.000Z" in context["elements"][0]["text"]


def test_resolved_and_sparse_messages() -> None:
    message = slack_message(
        notification(status="resolved", fields={}, command=None, link=None, summary="")
    )
    assert message["text"] == "[RESOLVED] Breaker opened for pixellab"
    assert [b["type"] for b in message["blocks"]] == ["section", "context"]
    assert message["blocks"][0]["text"]["text"].startswith(":white_check_mark: *RESOLVED*")


def test_text_from_errors_cannot_ping_or_forge_links() -> None:
    message = slack_message(
        notification(title="<!channel> fail", summary="see <https://evil.example|here> & more")
    )
    head = message["blocks"][0]["text"]["text"]
    assert "<!channel>" not in head and "&lt;!channel&gt;" in head
    assert "&lt;https://evil.example|here&gt; &amp; more" in head
    assert "<!channel>" not in message["text"]


def test_long_text_and_many_fields_fit_slack_limits() -> None:
    fields = {f"f{i}": "x" * 400 for i in range(15)}
    message = slack_message(notification(summary="y" * 2000, fields=fields))
    head, section = message["blocks"][0], message["blocks"][1]
    assert len(head["text"]["text"]) <= 3000
    assert len(section["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in section["fields"])


async def test_a_slack_message_is_posted_as_json() -> None:
    receiver = ScriptedReceiver(200)
    slack = SlackNotifier("oncall", SLACK_URL, client=receiver.client(), clock=FakeClock())
    result = await slack.send(notification())
    assert result.ok and result.type == "slack"
    [request] = receiver.requests
    assert request.json() == slack_message(notification())
    assert "webhook-signature" not in request.headers  # Slack URLs are not signed


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (410, "channel_is_archived"),
        (404, "no_service"),
        (404, "channel_not_found"),
        (403, "invalid_token"),
    ],
)
async def test_slack_answers_for_a_dead_url_disable_the_target(
    status: int, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = ScriptedReceiver((status, body))
    clock = FakeClock()
    slack = SlackNotifier(
        "oncall", SLACK_URL, client=receiver.client(), clock=clock, sleep=Sleeps()
    )
    with caplog.at_level(logging.WARNING, logger="genqueue.notify"):
        first = await slack.send(notification())
        second = await slack.send(notification())
    assert first.outcome is DeliveryOutcome.DISABLED and first.status_code == status
    assert first.error == f"HTTP {status}: {body}"
    assert second.outcome is DeliveryOutcome.DISABLED and second.attempts == 0
    assert body in (second.error or "")
    assert len(receiver.requests) == 1
    assert "secrettoken" not in caplog.text and "secrettoken" not in repr(slack)


@pytest.mark.parametrize(
    ("status", "body"), [(400, "invalid_payload"), (403, "action_prohibited"), (404, "")]
)
async def test_other_slack_errors_fail_without_retry_or_disabling(status: int, body: str) -> None:
    receiver = ScriptedReceiver((status, body), 200)
    sleeps = Sleeps()
    slack = SlackNotifier("oncall", SLACK_URL, client=receiver.client(), sleep=sleeps)
    first = await slack.send(notification())
    assert first.outcome is DeliveryOutcome.FAILED and first.attempts == 1 and sleeps.calls == []
    assert (await slack.send(notification())).ok  # not disabled


async def test_slack_rate_limits_and_server_errors_are_retried() -> None:
    receiver = ScriptedReceiver(
        (429, "rate_limited", {"Retry-After": "2"}), (500, "rollup_error"), 200
    )
    sleeps = Sleeps()
    slack = SlackNotifier("oncall", SLACK_URL, client=receiver.client(), sleep=sleeps)
    result = await slack.send(notification())
    assert result.ok and result.attempts == 3 and sleeps.calls == [2.0, 5.0]
