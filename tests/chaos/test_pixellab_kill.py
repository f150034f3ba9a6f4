"""A worker killed between a PixelLab submit and its completion: the job resumes, pays once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from genqueue import App, JobRequest, JobState
from genqueue.job import AttemptOutcome, Job
from genqueue.providers.fake_pixellab import FakeOptions, FakePixelLab
from tests.chaos.conftest import Workers, wait_until

pytestmark = pytest.mark.slow
KEY = "sk-chaos-9f8e7d6c5b4a"


def read(workers: Workers, job_id: str) -> Job:
    async def go() -> Job:
        async with App(workers.url, strict_tasks=False) as app:
            return await app.get(job_id)

    return asyncio.run(go())


def test_killed_between_submit_and_completion_resumes_and_pays_once(
    workers: Workers, tmp_path: Path
) -> None:
    # The remote job stays "processing" for 4 s, whatever the polls.
    options = FakeOptions(
        tokens={KEY: "main"}, complete_after_polls=10**6, complete_after_seconds=4.0
    )
    with FakePixelLab(options) as fake:
        workers.extra_env = {
            "PIXELLAB_BASE_URL": fake.base_url,
            "PIXELLAB_API_KEY": KEY,
            "GENQUEUE_OUTPUT_DIR": str(tmp_path / "out"),
        }

        async def enqueue() -> str:
            async with App(workers.url, strict_tasks=False) as app:
                data = {
                    "operation": "generate-image-v2",
                    "params": {
                        "description": "a knight",
                        "image_size": {"width": 128, "height": 128},
                    },
                }
                [job] = await app.queue.enqueue_many(
                    [JobRequest("pixellab.generate", data, queue="pixellab")]
                )
                return job.id

        job_id = asyncio.run(enqueue())
        first = workers.start()
        wait_until(
            lambda: read(workers, job_id).remote_job_id is not None,
            20,
            "the remote job id to be stored",
        )
        assert fake.stats()["submits_by_client_job"] == {job_id: 1}
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        workers.start()
        wait_until(
            lambda: read(workers, job_id).state is JobState.COMPLETED, 40, "the job to complete"
        )
        stats = fake.stats()
    job = read(workers, job_id)
    assert stats["submits_by_client_job"] == {job_id: 1}
    assert stats["charges_by_client_job"] == {job_id: 1}
    assert job.meta["resumed"] == 1 and len(job.result["images"]) == 4
    runs = [a for a in job.history if a.outcome is not AttemptOutcome.SNOOZED]
    assert [a.error.kind.value if a.error else a.outcome.value for a in runs] == [
        "worker_lost",
        "completed",
    ]


def test_killed_after_a_sync_charge_before_storing_the_images_is_not_paid_again(
    workers: Workers, tmp_path: Path
) -> None:
    with FakePixelLab(FakeOptions(tokens={KEY: "main"})) as fake:
        workers.extra_env = {
            "PIXELLAB_BASE_URL": fake.base_url,
            "PIXELLAB_API_KEY": KEY,
            "GENQUEUE_OUTPUT_DIR": str(tmp_path / "out"),
            "CHAOS_DIE_BEFORE_STORING": "1",
        }

        async def enqueue() -> str:
            async with App(workers.url, strict_tasks=False) as app:
                data = {
                    "operation": "create-image-pixflux",
                    "params": {"description": "a slime", "image_size": {"width": 32, "height": 32}},
                }
                [job] = await app.queue.enqueue_many(
                    [JobRequest("pixellab.generate", data, queue="pixellab")]
                )
                return job.id

        job_id = asyncio.run(enqueue())
        first = workers.start()
        assert first.wait(timeout=30) == 137  # it died right after the charge
        del workers.extra_env["CHAOS_DIE_BEFORE_STORING"]
        workers.start()
        wait_until(lambda: read(workers, job_id).state is JobState.DEAD, 30, "the job to die")
        stats = fake.stats()
    job = read(workers, job_id)
    assert stats["charges_by_client_job"] == {job_id: 1}
    assert job.last_error is not None and "accepted and charged it" in job.last_error.message
    assert job.cost["usd"] == stats["total_charged_usd"]  # the charge is on the job
