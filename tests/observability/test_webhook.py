"""Signed webhooks: the spec's signature, retries with backoff, and disabling after 410."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest
from standardwebhooks import Webhook

from genqueue import FakeClock
from genqueue.backends import Backend
from genqueue.clock import FAKE_CLOCK_START
from genqueue.errors import ConfigError
from genqueue.observability.notify import (
    DeliveryOutcome,
    DisabledTargets,
    Notification,
    Notifications,
    NotifySettings,
    NotifyTarget,
    RetrySchedule,
    WebhookNotifier,
    parse_secret,
    sign,
)
from tests.observability.receiver import (
    OTHER_SECRET,
    SECRET,
    LocalReceiver,
    ScriptedReceiver,
    SignatureError,
    Sleeps,
    spec_verify,
)

URL = "https://hooks.example.com/genqueue"


def alert(clock: FakeClock, **changes: object) -> Notification:
    options: dict[str, object] = {
        "kind": "alert",
        "status": "firing",
        "severity": "critical",
        "title": "DLQ size above 100",
        "summary": "132 dead letters",
        "fields": {"dlq_size": 132, "threshold": 100},
        "command": "genqueue dlq stats",
        "at": clock.now(),
        **changes,
    }
    return Notification.create(**options)  # type: ignore[arg-type]


def notifier(
    receiver: ScriptedReceiver, clock: FakeClock, sleeps: Sleeps, **options: object
) -> WebhookNotifier:
    return WebhookNotifier(
        "ops",
        URL,
        SECRET,
        client=receiver.client(),
        clock=clock,
        sleep=sleeps,
        **options,  # type: ignore[arg-type]
    )


# -- the signature ------------------------------------------------------------------------


def test_sign_matches_the_published_test_vector() -> None:
    key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_test_receiver_checks_what_the_spec_says() -> None:
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,bogus= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    spec_verify(SECRET, headers, body, now=1614265330)  # one valid signature of several
    with pytest.raises(SignatureError):
        spec_verify(SECRET, headers, body + b" ", now=1614265330)
    with pytest.raises(SignatureError):
        spec_verify(OTHER_SECRET, headers, body, now=1614265330)
    with pytest.raises(SignatureError):
        spec_verify(SECRET, headers, body, now=1614265330 + 301)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("whsec_not*base64!", "not base64"),
        ("whsec_" + "QUJD", "24-64"),  # 3 bytes
        ("", "24-64"),
    ],
)
def test_bad_secrets_are_config_errors_that_do_not_show_them(secret: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        parse_secret(secret, field="GENQUEUE_WEBHOOK_SECRET")
    assert "GENQUEUE_WEBHOOK_SECRET" in str(info.value)
    if secret:
        assert secret not in str(info.value)


def test_the_prefix_is_optional() -> None:
    assert parse_secret(SECRET) == parse_secret(SECRET.removeprefix("whsec_"))


async def test_a_delivery_is_signed_json_with_the_spec_payload_shape() -> None:
    clock = FakeClock()
    receiver = ScriptedReceiver(200)
    result = await notifier(receiver, clock, Sleeps()).send(alert(clock, id="ntf_abc"))
    assert result.ok and result.attempts == 1 and result.status_code == 200
    [request] = receiver.requests
    receiver.verify_all(SECRET, now=clock.now())
    assert request.headers["webhook-id"] == "ntf_abc"
    assert request.headers["webhook-timestamp"] == str(int(clock.now()))
    assert request.headers["content-type"] == "application/json"
    payload = request.json()
    assert payload["type"] == "genqueue.alert.firing"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"]["title"] == "DLQ size above 100"
    assert payload["data"]["fields"] == {"dlq_size": 132, "threshold": 100}
    assert payload["data"]["severity"] == "critical"
    with pytest.raises(SignatureError):
        spec_verify(OTHER_SECRET, request.headers, request.body, now=clock.now())


# -- retries ------------------------------------------------------------------------------


async def test_500_twice_then_200_is_delivered_on_the_third_request_with_the_same_id() -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    receiver = ScriptedReceiver(500, 500, 200)
    result = await notifier(receiver, clock, sleeps).send(alert(clock))
    assert result.outcome is DeliveryOutcome.DELIVERED and result.attempts == 3
    assert len(receiver.requests) == 3
    assert len(set(receiver.ids)) == 1
    assert sleeps.calls == [1.0, 5.0]
    # Each attempt is signed with its own timestamp, and each signature is valid.
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    start = int(FAKE_CLOCK_START)
    assert stamps == [start, start + 1, start + 6]
    receiver.verify_all(SECRET, now=clock.now())


async def test_network_errors_and_429_are_retried_and_retry_after_is_honoured() -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    receiver = ScriptedReceiver(
        httpx.ConnectError("connection refused"),
        (429, "slow down", {"Retry-After": "12"}),
        httpx.ReadTimeout("timed out"),
        200,
    )
    result = await notifier(receiver, clock, sleeps).send(alert(clock))
    assert result.ok and result.attempts == 4
    assert sleeps.calls == [1.0, 12.0, 25.0]  # Retry-After 12 s beats the 5 s step


async def test_retries_stop_after_the_schedule_and_the_failure_is_reported() -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    receiver = ScriptedReceiver(503, 502, 500, 500, 200)
    result = await notifier(receiver, clock, sleeps).send(alert(clock))
    assert result.outcome is DeliveryOutcome.FAILED
    assert result.attempts == 4 and result.status_code == 500
    assert result.error == "HTTP 500"
    assert sleeps.calls == [1.0, 5.0, 25.0]
    assert len(receiver.requests) == 4


async def test_retry_after_is_capped() -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    receiver = ScriptedReceiver((429, "", {"Retry-After": "86400"}), 200)
    schedule = RetrySchedule(delays=(1.0,), max_delay=30.0)
    result = await notifier(receiver, clock, sleeps, schedule=schedule).send(alert(clock))
    assert result.ok and sleeps.calls == [30.0]


@pytest.mark.parametrize("status", [400, 401, 404, 301])
async def test_other_answers_are_not_retried(status: int) -> None:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    receiver = ScriptedReceiver((status, "bad request body"))
    result = await notifier(receiver, clock, sleeps).send(alert(clock))
    assert result.outcome is DeliveryOutcome.FAILED and result.attempts == 1
    assert result.status_code == status and result.error == f"HTTP {status}: bad request body"
    assert sleeps.calls == [] and len(receiver.requests) == 1


async def test_errors_and_logs_never_show_the_secret_or_url_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    url = "https://hooks.example.com/genqueue?token=sup3rs3cr3tvalue"
    receiver = ScriptedReceiver(*[httpx.ConnectError(f"cannot reach {url}")] * 4)
    hook = WebhookNotifier(
        "ops", url, SECRET, client=receiver.client(), clock=clock, sleep=Sleeps(clock)
    )
    with caplog.at_level(logging.DEBUG, logger="genqueue.notify"):
        result = await hook.send(alert(clock))
    assert result.outcome is DeliveryOutcome.FAILED and result.error
    assert result.error.startswith("ConnectError: cannot reach")
    for text in (result.error, caplog.text, repr(hook)):
        assert "sup3rs3cr3tvalue" not in text
        assert SECRET.removeprefix("whsec_") not in text
    assert "not delivered to ops after 4 attempt(s)" in caplog.text


# -- 410 Gone -------------------------------------------------------------------------------


async def test_410_disables_the_target_for_every_process_on_the_backend(
    backend_kind: str,
    make_backend: Callable[[], Backend],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = make_backend()
    # A second backend object on the same storage stands for another worker process.
    second = first if backend_kind == "memory" else make_backend()
    await first.open()
    await second.open()
    target = NotifyTarget("ops", "webhook", URL, SECRET)  # type: ignore[arg-type]
    settings = NotifySettings((target,))
    receiver = ScriptedReceiver((410, "gone"))
    try:
        with caplog.at_level(logging.WARNING, logger="genqueue.notify"):
            one = Notifications(settings, backend=first, clock=clock, client=receiver.client())
            [_, gone] = await one.dispatch(alert(clock))
            assert gone.outcome is DeliveryOutcome.DISABLED and gone.status_code == 410
            again = await one.dispatch(alert(clock))
            two = Notifications(settings, backend=second, clock=clock, client=receiver.client())
            other = await two.dispatch(alert(clock))
        assert len(receiver.requests) == 1  # nothing was sent after the 410
        for results in (again, other):
            assert results[1].outcome is DeliveryOutcome.DISABLED
            assert results[1].attempts == 0
            assert "genqueue alerts enable ops" in (results[1].error or "")
        disabled = [r for r in caplog.records if "is disabled for every worker" in r.message]
        assert len(disabled) == 1  # logged once
        assert "genqueue alerts enable ops" in disabled[0].getMessage()
        stored = await second.state_get("notify:disabled:ops")
        assert stored is not None and stored[0]["disabled"] is True and stored[0]["status"] == 410
        assert URL not in str(stored[0])  # a hash of the URL, not the URL

        assert await two.enable("ops") is True
        assert await one.enable("ops") is False  # already enabled
        [_, back] = await one.dispatch(alert(clock))
        assert back.ok and len(receiver.requests) == 2
    finally:
        await first.close()
        if second is not first:
            await second.close()


async def test_a_new_url_for_a_disabled_target_is_sent_to() -> None:
    clock = FakeClock()
    disabled = DisabledTargets(clock=clock)
    receiver = ScriptedReceiver((410, ""), 200)
    common = {"client": receiver.client(), "clock": clock, "sleep": Sleeps(), "disabled": disabled}
    old = WebhookNotifier("ops", URL, SECRET, **common)  # type: ignore[arg-type]
    assert (await old.send(alert(clock))).outcome is DeliveryOutcome.DISABLED
    assert (await old.send(alert(clock))).attempts == 0
    fixed = WebhookNotifier("ops", URL + "/v2", SECRET, **common)  # type: ignore[arg-type]
    assert (await fixed.send(alert(clock))).ok


# -- a real HTTP server -----------------------------------------------------------------------


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_proxy")
async def test_a_real_receiver_verifies_the_signature_and_sees_the_retries() -> None:
    sleeps = Sleeps()
    with LocalReceiver(500, 500, 200).serve() as receiver:
        hook = WebhookNotifier("local", receiver.url, SECRET, sleep=sleeps)
        try:
            result = await hook.send(alert(FakeClock(time.time())))
        finally:
            await hook.aclose()
    assert result.ok and result.attempts == 3 and sleeps.calls == [1.0, 5.0]
    assert len(receiver.requests) == 3 and len(set(receiver.ids)) == 1
    for request in receiver.requests:
        spec_verify(SECRET, request.headers, request.body, now=time.time())
        # ...and the reference library a receiver would use agrees.
        data = Webhook(SECRET).verify(request.body, request.headers)
        assert data["data"]["title"] == "DLQ size above 100"


@pytest.mark.usefixtures("no_proxy")
async def test_a_real_receiver_answering_410_is_not_sent_to_again() -> None:
    with LocalReceiver((410, "")).serve() as receiver:
        hook = WebhookNotifier("local", receiver.url, SECRET, sleep=Sleeps())
        try:
            first = await hook.send(alert(FakeClock(time.time())))
            second = await hook.send(alert(FakeClock(time.time())))
        finally:
            await hook.aclose()
    assert first.outcome is DeliveryOutcome.DISABLED and first.status_code == 410
    assert second.outcome is DeliveryOutcome.DISABLED and second.attempts == 0
    assert len(receiver.requests) == 1
