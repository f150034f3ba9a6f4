"""Auto-redrive policies: opt-in, after a cooldown or once breakers close, rate-bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from genqueue import App, ErrorKind, FakeClock, JobContext, RetryPolicy, TaskError
from genqueue.autoredrive import AutoRedrivePolicy, AutoRedriver
from genqueue.errors import ConfigError
from genqueue.events import Event
from genqueue.settings import Retention
from genqueue.testing import run_until_idle

Kinds = {
    "net": ErrorKind.NETWORK,
    "bad": ErrorKind.VALIDATION,
    "lost": ErrorKind.SUBMISSION_UNCERTAIN,
}


def make_app(
    clock: FakeClock, url: str = "memory://", max_redrives: int = 3
) -> tuple[App, set[str]]:
    app = App(
        url,
        clock=clock,
        retry=RetryPolicy(max_retries=0),
        retention=Retention(max_redrives=max_redrives),
    )
    healed: set[str] = set()

    for name, kind in Kinds.items():

        async def fail(ctx: JobContext, kind: ErrorKind = kind) -> str:
            if ctx.id in healed:
                return "ok"
            raise TaskError(f"{kind.value} failure", kind=kind)

        app.task(name, queue="q")(fail)
    return app, healed


async def dead(app: App, task: str, n: int) -> list[str]:
    ids = [(await app.enqueue(task, {"i": i})).id for i in range(n)]
    await run_until_idle(app)
    return ids


async def test_a_policy_waits_its_cooldown_then_redrives_what_it_names() -> None:
    clock = FakeClock()
    app, healed = make_app(clock)
    seen: list[Event] = []
    app.events.subscribe(seen.append, ["dlq_auto_redrive", "dlq_retry"])
    policy = AutoRedrivePolicy("network", error_kinds=frozenset({ErrorKind.NETWORK}), cooldown=600)
    runner = AutoRedriver(app, [policy])
    async with app:
        net = await dead(app, "net", 3)
        await dead(app, "bad", 2)
        assert await runner.step() == {"network": 0}  # too fresh
        clock.advance(601)
        healed.update(net)
        assert await runner.step() == {"network": 3}
        await run_until_idle(app)
        assert {(await app.get(i)).state.value for i in net} == {"completed"}
        assert await app.dlq.count() == 2  # the validation errors stay
        job = await app.get(net[0])
        assert job.meta["redrives"][-1]["by"] == "auto-redrive:network"
    retries = [e for e in seen if e.name == "dlq_retry"]
    assert len(retries) == 3 and {e.fields["by"] for e in retries} == {"auto-redrive:network"}
    [summary] = [e for e in seen if e.name == "dlq_auto_redrive"]
    assert summary.fields["policy"] == "network" and summary.fields["count"] == 3


async def test_rate_bound_and_max_redrives() -> None:
    clock = FakeClock()
    app, _ = make_app(clock, max_redrives=2)
    runner = AutoRedriver(app, [AutoRedrivePolicy("all", cooldown=0, per_minute=4)])
    async with app:
        await dead(app, "net", 6)
        assert await runner.step() == {"all": 4}  # the minute's budget
        assert await runner.step() == {"all": 0}
        await run_until_idle(app)  # the four die again
        runner._recent["all"].clear()  # a minute later (the budget is in real time)
        assert await runner.step() == {"all": 4}
        await run_until_idle(app)
        runner._recent["all"].clear()
        # Four entries are at max_redrives now; only the two never redriven remain.
        assert await runner.step() == {"all": 2}


async def test_submission_uncertain_only_when_named() -> None:
    clock = FakeClock()
    app, _ = make_app(clock)
    async with app:
        await dead(app, "lost", 2)
        anything = AutoRedriver(app, [AutoRedrivePolicy("any", cooldown=0)])
        assert await anything.step() == {"any": 0}  # may have been charged: not touched
        named = AutoRedriver(
            app,
            [
                AutoRedrivePolicy(
                    "u", error_kinds=frozenset({ErrorKind.SUBMISSION_UNCERTAIN}), cooldown=0
                )
            ],
            holder=anything.holder,
        )
        assert await named.step() == {"u": 2}


async def test_waits_for_breakers_and_one_leader_acts(tmp_path: Path) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    app, _ = make_app(clock, url)
    other, _ = make_app(clock, url)  # another worker process on the same file
    open_breaker = True

    async def healthy() -> bool:
        return not open_breaker

    policy = AutoRedrivePolicy("outage", cooldown=0)
    async with app, other:
        await dead(app, "net", 3)
        first = AutoRedriver(app, [policy], healthy=healthy, interval=10)
        second = AutoRedriver(other, [policy], healthy=healthy, interval=10)
        assert await first.step() == {}  # leads, but the breaker is open
        assert await second.step() == {}  # not the leader
        open_breaker = False
        assert await second.step() == {}
        assert await first.step() == {"outage": 3}
        clock.advance(31)  # the leader's lease lapses (it died): the other takes over
        await dead(app, "net", 1)  # the three redriven die again, and one more
        assert await second.step() == {"outage": 4}
        assert await first.step() == {}  # no longer the leader


def test_policies_from_settings_and_bad_input() -> None:
    policy = AutoRedrivePolicy.from_mapping(
        {"name": "net", "error_kinds": ["network", "timeout"], "cooldown": 300, "per_minute": 10}
    )
    assert policy.error_kinds == {ErrorKind.NETWORK, ErrorKind.TIMEOUT} and policy.cooldown == 300
    with pytest.raises(ConfigError, match="error_kinds must be of"):
        AutoRedrivePolicy.from_mapping({"name": "x", "error_kinds": ["nope"]})
    with pytest.raises(ConfigError, match="unknown auto-redrive policy field"):
        AutoRedrivePolicy.from_mapping({"name": "x", "kinds": ["network"]})
    with pytest.raises(ConfigError, match="per_minute"):
        AutoRedrivePolicy("x", per_minute=0)
    with pytest.raises(ConfigError, match="cooldown"):
        AutoRedrivePolicy("x", cooldown=-1)
