"""Typed task data: ``JobContext[Model]`` validates at enqueue and hands the task a model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from genqueue import App, ConfigError, ErrorKind, InvalidInput, JobContext, JobState
from tests.conformance.helpers import Recorder
from tests.conftest import drain


class Size(BaseModel):
    width: int = Field(gt=0, le=400)
    height: int = 64


class GenerateRequest(BaseModel):
    prompt: str
    image_size: Size = Size(width=64)
    tags: list[str] = []


@pytest.fixture
def seen(app: App) -> list[object]:
    received: list[object] = []

    @app.task("generate")
    async def generate(ctx: JobContext[GenerateRequest]) -> dict[str, object]:
        received.append(ctx.data)
        return {"prompt": ctx.data.prompt, "width": ctx.data.image_size.width}

    @app.task("generate_sync")
    def generate_sync(ctx: JobContext[GenerateRequest]) -> str:
        received.append(ctx.data)
        return ctx.data.prompt

    return received


async def test_task_gets_the_model_and_the_store_keeps_json(app: App, seen: list[object]) -> None:
    job = await app.enqueue("generate", {"prompt": "a knight", "image_size": {"width": 128}})
    assert job.data == {
        "prompt": "a knight",
        "image_size": {"width": 128, "height": 64},
        "tags": [],
    }
    sync_job = await app.enqueue("generate_sync", GenerateRequest(prompt="a cat"))
    await drain(app)
    assert seen == [
        GenerateRequest(prompt="a knight", image_size=Size(width=128)),
        GenerateRequest(prompt="a cat"),
    ]
    done = await app.get(job.id)
    assert done.state is JobState.COMPLETED and done.result == {"prompt": "a knight", "width": 128}
    assert done.data == job.data  # plain JSON at rest
    assert (await app.get(sync_job.id)).result == "a cat"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "data.prompt", "data does not match GenerateRequest: data.prompt: Field required"),
        ({"prompt": "x", "image_size": {"width": 0}}, "data.image_size.width", "greater than 0"),
        ({"prompt": "x", "tags": ["a", 5]}, "data.tags[1]", "valid string"),
        ({"prompt": 1, "image_size": {"width": 999}}, "data.prompt", "(and 1 more)"),
        ("a knight", "data", "GenerateRequest"),
    ],
)
async def test_bad_data_is_refused_before_anything_is_stored(
    app: App, seen: list[object], data: object, field: str, message: str
) -> None:
    recorder = Recorder(app)
    with pytest.raises(InvalidInput) as info:
        await app.enqueue("generate", data)
    assert info.value.field == field and message in str(info.value)
    assert (await app.list_jobs()).items == [] and recorder.events == []


async def test_stored_data_that_no_longer_fits_fails_as_validation(
    app: App, seen: list[object]
) -> None:
    # A producer that does not know the model (another process, an older version)...
    loose = App(app.backend, clock=app.clock, strict_tasks=False)
    job = await loose.enqueue("generate", {"title": "no prompt here"})
    await drain(app)
    dead = await app.get(job.id)
    assert dead.state is JobState.DEAD and seen == []
    assert dead.last_error is not None and dead.last_error.kind is ErrorKind.VALIDATION
    assert dead.last_error.message.startswith(
        "job data does not match GenerateRequest: data.prompt: Field required"
    )


async def test_untyped_tasks_get_the_json(app: App) -> None:
    received: list[object] = []

    @app.task("plain")
    async def plain(ctx: JobContext) -> None:
        received.append(ctx.data)

    @app.task("dicts")
    async def dicts(ctx: JobContext[dict[str, int]]) -> None:
        received.append(ctx.data)

    await app.enqueue("plain", {"anything": ["goes"]})
    await app.enqueue("dicts", {"n": 1})
    await drain(app)
    assert sorted(received, key=str) == [{"anything": ["goes"]}, {"n": 1}]
    assert app.tasks.get("plain").data_model is None and app.tasks.get("dicts").data_model is None


def test_an_unresolvable_model_is_a_config_error() -> None:
    app = App("memory://")

    class Local(BaseModel):  # not visible from the module: the annotation cannot resolve
        x: int

    async def task(ctx: JobContext[Local]) -> None: ...

    with pytest.raises(ConfigError, match="cannot resolve the data type 'JobContext\\[Local\\]'"):
        app.task("local")(task)
