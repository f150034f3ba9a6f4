"""Dead-letter digests: one notification per fingerprint group and window, never per job."""

from __future__ import annotations

from genqueue import App, ErrorKind, FakeClock
from genqueue.entry import DLQFilter, DLQStats, FingerprintGroup
from genqueue.observability.notify import (
    Notifications,
    NotifySettings,
    NotifyTarget,
    collect_dead_letter_digests,
    dead_letter_digests,
)
from tests.conformance.helpers import make_dead
from tests.observability.receiver import ScriptedReceiver

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecrettokenXXXX"


async def test_200_dead_letters_of_3_fingerprints_give_3_slack_messages(
    app: App, clock: FakeClock
) -> None:
    since = clock.now()
    await make_dead(app, 120, task="gen.image", message="provider answered 500: internal error")
    await make_dead(
        app, 50, task="gen.image", kind=ErrorKind.RATE_LIMITED, message="rate limited by provider"
    )
    await make_dead(
        app, 30, task="gen.sprite", kind=ErrorKind.VALIDATION, message="prompt rejected"
    )
    until = since + 200  # make_dead spaces entries one second apart: all inside
    # Outside the window: failed after it.
    await make_dead(app, 5, task="gen.late", message="too late for the window", offset=1000)

    digests = await collect_dead_letter_digests(app.dlq, since=since, until=until)

    assert len(digests) == 3
    assert [d.fields["count"] for d in digests] == [120, 50, 30]
    big = digests[0]
    assert big.kind.value == "dead_letters" and big.status.value == "firing"
    assert big.title == "120 dead letters: server in gen.image"
    assert big.summary == "provider answered 500: internal error"
    assert big.fields["error_kind"] == "server" and big.fields["tasks"] == "gen.image"
    assert big.fields["window_total"] == 200
    fingerprint = big.fields["fingerprint"]
    assert big.command == f"genqueue dlq list --fingerprint {fingerprint}"
    assert digests[1].fields["error_kind"] == "rate_limited"
    assert digests[2].fields["tasks"] == "gen.sprite"
    assert len({d.id for d in digests}) == 3
    # Another worker building the same window's digests gives the same ids (receivers dedupe).
    again = await collect_dead_letter_digests(app.dlq, since=since, until=until)
    assert [d.id for d in again] == [d.id for d in digests]
    # The command filters on the real CLI option.
    listed = await app.dlq.count(DLQFilter(fingerprint=str(fingerprint)))
    assert listed == 120

    receiver = ScriptedReceiver()
    target = NotifyTarget("oncall", "slack", SLACK_URL)  # type: ignore[arg-type]
    notifications = Notifications(
        NotifySettings((target,)), backend=app.backend, clock=clock, client=receiver.client()
    )
    for digest in digests:
        results = await notifications.dispatch(digest)
        assert all(r.ok for r in results)
    assert len(receiver.requests) == 3
    texts = [r.json()["text"] for r in receiver.requests]
    assert texts[0] == (
        "[DEAD LETTERS] 120 dead letters: server in gen.image: provider answered 500: internal error"
    )
    assert all(
        "genqueue dlq list --fingerprint" in str(r.json()["blocks"]) for r in receiver.requests
    )


def _stats(counts: list[int], total: int) -> DLQStats:
    groups = [
        FingerprintGroup(f"fp{i}", n, "server", "RuntimeError", f"error {i}", ["t"])
        for i, n in enumerate(counts)
    ]
    return DLQStats(total, {}, {}, {}, {}, groups, {})


def test_groups_beyond_top_are_summed_into_one_more_notification() -> None:
    digests = dead_letter_digests(_stats([40, 30], total=100), since=0.0, until=3600.0)
    assert len(digests) == 3
    rest = digests[-1]
    assert rest.fields["count"] == 30
    assert rest.title == "30 more dead letters in other error groups"
    assert rest.command == (
        "genqueue dlq stats --since 1970-01-01T00:00:00.000Z --until 1970-01-01T01:00:00.000Z"
    )


def test_an_empty_window_gives_nothing() -> None:
    assert dead_letter_digests(_stats([], total=0), since=0.0, until=60.0) == []


def test_severity_link_and_odd_fingerprints() -> None:
    stats = _stats([3], total=3)
    stats.top_fingerprints[0].fingerprint = "a b;rm"
    [digest] = dead_letter_digests(
        stats, since=0.0, until=60.0, severity="critical", link="https://ops.example.com/dlq"
    )
    assert digest.severity.value == "critical" and digest.link == "https://ops.example.com/dlq"
    assert digest.command == "genqueue dlq list --fingerprint 'a b;rm'"
    assert digest.title == "3 dead letters: server in t"
