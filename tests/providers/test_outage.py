"""A provider outage end to end: the breaker opens and its alert fires, jobs wait, the
outage ends (the alert resolves), the auto-redrive policy brings the jobs that were
dead-lettered meanwhile back, and nothing is charged twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.observability.alerts_support import Recorder
from tests.providers.pixellab_helpers import PIXFLUX, enqueue, pixellab_app, terminal

from genqueue import ErrorKind, JobState, Worker, WorkerSettings
from genqueue.autoredrive import AutoRedrivePolicy, AutoRedriver
from genqueue.events import Event
from genqueue.observability.alerts import AlertEvaluator, AlertSettings, BreakerOpen
from genqueue.providers.breaker import list_breakers, no_breaker_open
from genqueue.providers.guard import BreakerSettings


async def test_outage_then_auto_redrive(make_fake: Any, tmp_path: Path) -> None:
    fake = make_fake(sync_latency=(0.01, 0.03))
    breaker = BreakerSettings(failure_threshold=3, cooldown=0.5, max_cooldown=1.0)
    async with pixellab_app(fake, tmp_path, max_retries=1, breaker=breaker) as (app, _):
        seen: list[Event] = []
        app.events.subscribe(
            seen.append, ["circuit_opened", "circuit_closed", "dlq_auto_redrive", "queue_dlq_move"]
        )

        async def healthy() -> bool:
            return await no_breaker_open(app)

        policy = AutoRedrivePolicy(
            "outage", error_kinds=frozenset({ErrorKind.NETWORK}), cooldown=0, per_minute=100
        )
        AutoRedriver(app, [policy], healthy=healthy, interval=0.1).install()
        alerts = Recorder()
        evaluator = AlertEvaluator(
            app, AlertSettings(rules=(BreakerOpen(),)), notifier=alerts, breakers=list_breakers
        )
        fake.stop()  # the provider is down: connections are refused
        ids = await enqueue(app, "create-image-pixflux", PIXFLUX, n=12)
        worker = Worker(app, queues=["pixellab"], settings=WorkerSettings(concurrency=4))
        runner = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(60):
                while not (
                    await app.dlq.count()
                    and any(b["state"] != "closed" for b in await list_breakers(app))
                ):
                    await asyncio.sleep(0.02)
                dead_in_outage = await app.dlq.count()
                await evaluator.step()  # the elected evaluator's round
                assert alerts.statuses("breaker_open") == ["firing"]
                await asyncio.sleep(0.5)  # the breaker is open: nothing is redriven
                assert not [e for e in seen if e.name == "dlq_auto_redrive"]
                fake.start()  # the outage ends
                while not await terminal(app, ids)() or await app.dlq.count():
                    await asyncio.sleep(0.05)
                await evaluator.step()
                assert alerts.statuses("breaker_open") == ["firing", "resolved"]
        finally:
            worker.request_stop()
            await runner
        states = [(await app.get(i)).state for i in ids]
        redriven = [e for e in seen if e.name == "dlq_auto_redrive"]
    names = [e.name.value for e in seen]
    assert dead_in_outage >= 1 and "circuit_opened" in names
    # Auto-redrive began only after the breaker closed.
    assert names.index("circuit_closed") < names.index("dlq_auto_redrive")
    assert sum(e.fields["count"] for e in redriven) >= dead_in_outage
    assert states == [JobState.COMPLETED] * len(ids)
    charges = fake.stats()["charges_by_client_job"]
    assert sorted(charges) == sorted(ids) and set(charges.values()) == {1}
