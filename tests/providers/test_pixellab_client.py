"""The PixelLab client against the fake: every row of the error mapping, and decoding."""

from __future__ import annotations

import pytest
from tests.providers.conftest import KEY

from genqueue import ErrorKind
from genqueue.providers.base import Completed, GenerationRequest, Pending, ProviderError, RemoteRef
from genqueue.providers.fake_pixellab import (
    FakeOptions,
    FakePixelLab,
    accept_then_fail,
    drop_fault,
    fail_job,
    gateway_fault,
    hang_fault,
    status_fault,
)
from genqueue.providers.pixellab.client import PixelLabClient, RemoteJobGone
from genqueue.providers.png import png_size

PIXFLUX = {"description": "a knight", "image_size": {"width": 64, "height": 48}}
PRO = {"description": "a knight", "image_size": {"width": 128, "height": 128}}


def req(operation: str = "create-image-pixflux", params: dict | None = None) -> GenerationRequest:  # type: ignore[type-arg]
    return GenerationRequest("a" * 32, operation, params or PIXFLUX)


async def submit_error(
    client: PixelLabClient, request: GenerationRequest | None = None
) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await client.submit(request or req())
    return info.value


async def test_sync_submit_returns_a_decoded_png_and_usage(
    client: PixelLabClient, fake: FakePixelLab
) -> None:
    done = await client.submit(req())
    assert isinstance(done, Completed)
    assert [png_size(p) for p in done.images] == [(64, 48)]
    assert done.usage is not None and done.usage.usd > 0 and done.usage.generations > 0
    assert "<image elided>" in str(done.raw)
    assert fake.stats()["charges_by_client_job"] == {"a" * 32: 1}


@pytest.mark.parametrize("encoding", ["data_uri", "rgba_bytes"])
async def test_other_image_encodings_decode_to_png(encoding: str) -> None:
    with FakePixelLab(FakeOptions(tokens={KEY: "main"}, image_encoding=encoding)) as fake:  # type: ignore[arg-type]
        client = PixelLabClient(KEY, base_url=fake.base_url)
        try:
            done = await client.submit(req())
        finally:
            await client.aclose()
    assert isinstance(done, Completed) and png_size(done.images[0]) == (64, 48)


@pytest.mark.parametrize(
    ("operation", "params", "ids", "images"),
    [
        ("generate-image-v2", PRO, 1, 4),
        (
            "generate-8-rotations-v3",
            {"description": "knight", "image_size": {"width": 32, "height": 32}},
            1,
            8,
        ),
        (
            "create-character-with-4-directions",
            {"description": "knight", "image_size": {"width": 48, "height": 48}},
            1,
            4,
        ),
        ("create-tileset", {"lower_description": "grass", "upper_description": "stone"}, 1, 16),
    ],
)
async def test_async_routes_answer_a_job_id_then_complete(
    client: PixelLabClient,
    operation: str,
    params: dict,
    ids: int,
    images: int,  # type: ignore[type-arg]
) -> None:
    ref = await client.submit(req(operation, params))
    assert isinstance(ref, RemoteRef) and len(ref.remote_job_ids) == ids
    assert isinstance(await client.poll(ref), Pending)
    done = await client.poll(ref)
    assert isinstance(done, Completed) and len(done.images) == images
    assert done.usage is not None and done.usage.usd > 0


async def test_background_job_ids_list(client: PixelLabClient) -> None:
    character = await client.submit(
        req(
            "create-character-with-4-directions",
            {"description": "k", "image_size": {"width": 48, "height": 48}},
        )
    )
    assert isinstance(character, RemoteRef)
    character_id = character.extra_ids["character_id"]
    ref = await client.submit(
        req("animate-character", {"character_id": character_id, "action": "walk"})
    )
    assert isinstance(ref, RemoteRef) and len(ref.remote_job_ids) == 4
    assert RemoteRef.parse(ref.operation, ref.remote_job_id) == RemoteRef(
        ref.operation, ref.remote_job_ids
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.VALIDATION),
        (401, ErrorKind.AUTH),
        (402, ErrorKind.PAYMENT),
        (403, ErrorKind.AUTH),
        (404, ErrorKind.VALIDATION),
        (409, ErrorKind.VALIDATION),
        (422, ErrorKind.VALIDATION),
        (429, ErrorKind.RATE_LIMITED),
        (529, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.SERVER),
        (503, ErrorKind.SERVER),
    ],
)
async def test_submit_status_mapping(
    client: PixelLabClient, fake: FakePixelLab, status: int, kind: ErrorKind
) -> None:
    fake.add_fault(
        "POST /v2/create-image-*", status_fault(status, body={"detail": f"problem {status}"})
    )
    error = await submit_error(client)
    assert error.error_kind is kind and error.status == status
    assert error.detail == f"problem {status}"
    # A 5xx does not prove the submit was rejected: PixelLab may have billed it.
    assert error.maybe_charged is (status >= 500 and status != 529)


async def test_real_validation_errors_keep_fastapi_detail(
    client: PixelLabClient, fake: FakePixelLab
) -> None:
    error = await submit_error(
        client, req(params={"description": "", "image_size": {"width": 8, "height": 8}})
    )
    assert error.error_kind is ErrorKind.VALIDATION and error.status == 422
    assert isinstance(error.detail, list) and error.detail[0]["loc"][0] == "body"
    assert fake.stats()["charges"] == 0


async def test_real_auth_and_payment_errors(fake: FakePixelLab) -> None:
    bad = PixelLabClient("not-the-key-000", base_url=fake.base_url)
    try:
        assert (await submit_error(bad)).error_kind is ErrorKind.AUTH
    finally:
        await bad.aclose()
    fake.set_balance(0)
    good = PixelLabClient(KEY, base_url=fake.base_url)
    try:
        error = await submit_error(good)
        assert error.error_kind is ErrorKind.PAYMENT and error.detail == "Insufficient credits"
    finally:
        await good.aclose()


async def test_429_carries_retry_after(client: PixelLabClient, fake: FakePixelLab) -> None:
    fake.add_fault(
        "POST /v2/create-image-*",
        status_fault(429, body={"detail": "Too many requests"}, headers={"Retry-After": "7"}),
    )
    error = await submit_error(client)
    assert (
        error.error_kind is ErrorKind.RATE_LIMITED
        and error.retry_after == 7.0
        and error.retryable is None
    )


async def test_non_json_5xx_body(client: PixelLabClient, fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-*", gateway_fault(502))
    error = await submit_error(client)
    assert error.error_kind is ErrorKind.SERVER and error.status == 502
    assert isinstance(error.detail, str) and "502" in error.detail


async def test_connect_error_is_network_and_never_charged() -> None:
    client = PixelLabClient(KEY, base_url="http://127.0.0.1:9/v2")  # nothing listens on port 9
    try:
        error = await submit_error(client)
    finally:
        await client.aclose()
    assert error.error_kind is ErrorKind.NETWORK and not error.maybe_charged


@pytest.mark.parametrize("after_body", [False, True])
async def test_dropped_connection_is_network_and_maybe_charged(
    client: PixelLabClient, fake: FakePixelLab, after_body: bool
) -> None:
    fake.add_fault("POST /v2/create-image-*", drop_fault(after_body=after_body))
    error = await submit_error(client)
    assert error.error_kind is ErrorKind.NETWORK and error.maybe_charged


async def test_read_timeout_is_timeout_and_maybe_charged(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-*", hang_fault())
    pixellab = PixelLabClient(KEY, base_url=fake.base_url, read_timeout=0.3)
    try:
        error = await submit_error(pixellab)
    finally:
        await pixellab.aclose()
    assert error.error_kind is ErrorKind.TIMEOUT and error.maybe_charged


async def test_accept_then_fail_charges_but_reports_failure(
    client: PixelLabClient, fake: FakePixelLab
) -> None:
    fake.add_fault("POST /v2/generate-image-v2", accept_then_fail(drop=True))
    error = await submit_error(client, req("generate-image-v2", PRO))
    assert error.maybe_charged and error.error_kind is ErrorKind.NETWORK
    assert fake.stats()["charges"] == 1


async def test_failed_remote_job(client: PixelLabClient, fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/generate-image-v2", fail_job("NSFW content detected"))
    ref = await client.submit(req("generate-image-v2", PRO))
    assert isinstance(ref, RemoteRef)
    with pytest.raises(ProviderError) as info:
        for _ in range(5):
            await client.poll(ref)
    error = info.value
    assert error.error_kind is ErrorKind.REMOTE_FAILED and error.maybe_charged
    assert "NSFW content detected" in str(error) and error.remote_job_id == ref.remote_job_ids[0]
    assert error.usage is not None and error.usage.usd > 0


async def test_unknown_remote_job_is_gone(client: PixelLabClient) -> None:
    with pytest.raises(RemoteJobGone) as info:
        await client.poll(RemoteRef("generate-image-v2", ("00000000-0000-0000-0000-000000000000",)))
    assert info.value.error_kind is ErrorKind.REMOTE_LOST and info.value.status == 404


async def test_poll_5xx_keeps_the_remote_id(client: PixelLabClient, fake: FakePixelLab) -> None:
    ref = await client.submit(req("generate-image-v2", PRO))
    assert isinstance(ref, RemoteRef)
    fake.add_fault("GET /v2/background-jobs/*", gateway_fault(503))
    with pytest.raises(ProviderError) as info:
        await client.poll(ref)
    assert (
        info.value.error_kind is ErrorKind.SERVER
        and info.value.remote_job_id == ref.remote_job_ids[0]
    )


@pytest.mark.parametrize(
    "option",
    [
        {"locked_while_processing": True},
        {"progress_status": "finalizing", "complete_after_polls": 3},
    ],
)
async def test_423_and_unknown_status_words_mean_still_running(option: dict) -> None:  # type: ignore[type-arg]
    with FakePixelLab(FakeOptions(tokens={KEY: "main"}, **option)) as fake:
        client = PixelLabClient(KEY, base_url=fake.base_url)
        try:
            ref = await client.submit(req("generate-image-v2", PRO))
            assert isinstance(ref, RemoteRef)
            states = [await client.poll(ref) for _ in range(3)]
        finally:
            await client.aclose()
    assert isinstance(states[0], Pending) and isinstance(states[-1], Completed)


async def test_non_json_2xx_is_unknown(client: PixelLabClient, fake: FakePixelLab) -> None:
    fake.add_fault(
        "POST /v2/create-image-*",
        status_fault(200, text="<html>ok</html>", content_type="text/html"),
    )
    error = await submit_error(client)
    assert error.error_kind is ErrorKind.UNKNOWN and error.maybe_charged


async def test_unknown_operation_is_bad_input(client: PixelLabClient) -> None:
    from genqueue import InvalidInput

    with pytest.raises(InvalidInput, match="unknown PixelLab operation"):
        await client.submit(req("make-it-pretty"))


async def test_the_key_never_appears_in_errors(client: PixelLabClient, fake: FakePixelLab) -> None:
    fake.add_fault(
        "POST /v2/create-image-*",
        status_fault(
            500, text=f"upstream said Authorization: Bearer {KEY}", content_type="text/plain"
        ),
    )
    error = await submit_error(client)
    assert KEY not in str(error) and KEY not in str(error.detail)
