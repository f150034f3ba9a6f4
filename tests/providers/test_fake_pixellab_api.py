"""The fake PixelLab server's API behaviour: auth, sync and async routes, polling, billing."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.providers.conftest import MakeFake

from genqueue.providers.fake_pixellab import FakePixelLab
from genqueue.providers.fake_pixellab.png import ImageSpec, encode_png, sprite_rgba
from genqueue.providers.fake_pixellab.routes import ROUTES, pro_image_count

TOKEN = "test-key-123"
OTHER = "other-key-456"
PIXFLUX = {"description": "a tiny knight", "image_size": {"width": 64, "height": 48}}
PRO = {"description": "a cat", "image_size": {"width": 100, "height": 100}}


@pytest.fixture
def make_fake(make_fake: MakeFake) -> MakeFake:
    """The shared factory, with this file's two tokens by default."""

    def make(**options: Any) -> FakePixelLab:
        options.setdefault("tokens", {TOKEN: "main", OTHER: "other"})
        return make_fake(**options)

    return make


@pytest.fixture
def fake(make_fake: MakeFake) -> FakePixelLab:
    return make_fake()


def api(fake: FakePixelLab, token: str | None = TOKEN, **kw: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=fake.base_url, headers=headers, timeout=5.0, **kw)


def png_of(image: dict[str, Any]) -> Image.Image:
    assert image["type"] == "base64"
    raw = image["base64"].removeprefix("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(raw)))


def poll_until_done(client: httpx.Client, job_id: str, limit: int = 10) -> dict[str, Any]:
    for _ in range(limit):
        body: dict[str, Any] = client.get(f"/background-jobs/{job_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
    raise AssertionError("job never finished")


# -- auth ------------------------------------------------------------------------------------


def test_missing_unknown_and_revoked_tokens_get_401(fake: FakePixelLab) -> None:
    for token in (None, "wrong-token"):
        with api(fake, token) as client:
            r = client.post("/create-image-pixflux", json=PIXFLUX)
        assert r.status_code == 401
        assert r.json() == {"detail": "Invalid API token"}
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": TOKEN}) as client:
        assert client.get("/balance").status_code == 401  # no "Bearer" scheme
    fake.revoke_token(TOKEN)
    with api(fake) as client:
        assert client.get("/balance").status_code == 401
        fake.restore_token(TOKEN)
        assert client.get("/balance").status_code == 200
    fake.add_token("new-token", "new")
    with api(fake, "new-token") as client:
        assert client.get("/balance").status_code == 200
    stats = fake.stats()
    assert stats["errors"]["401"] == 4
    assert stats["charges"] == 0


def test_a_request_authenticated_before_a_revocation_is_not_billed_after_it(
    fake: FakePixelLab,
) -> None:
    # The bill re-checks the token under the lock that charges: a request already past
    # authentication when its key is revoked answers 401 and charges nothing.
    from genqueue.providers.fake_pixellab.routes import ROUTES_BY_OPERATION
    from genqueue.providers.fake_pixellab.state import Submit, TokenRevoked

    state = fake.app.state
    label = state.label_of(TOKEN)
    assert label is not None
    fake.revoke_token(TOKEN)
    spec = ImageSpec(description="x", seed=1, width=32, height=32, transparent=False)
    route = ROUTES_BY_OPERATION["generate-image-v2"]
    with pytest.raises(TokenRevoked):
        state.accept_async(Submit(label, route, [spec], None))
    with pytest.raises(TokenRevoked):
        state.charge_sync(label, ROUTES_BY_OPERATION["create-image-pixflux"], None)
    assert fake.stats()["charges"] == 0
    fake.restore_token(TOKEN)
    assert state.accept_async(Submit(label, route, [spec], None)).charge.usd > 0


# -- sync routes -----------------------------------------------------------------------------


def test_pixflux_returns_a_png_of_the_requested_size(fake: FakePixelLab) -> None:
    body = {**PIXFLUX, "no_background": True, "seed": 7}
    with api(fake) as client:
        r = client.post("/create-image-pixflux", json=body)
        again = client.post("/create-image-pixflux", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["usage"] == {"type": "usd", "usd": 0.01, "generations": 1}
    assert data["image"]["format"] == "png"
    img = png_of(data["image"])
    img.load()
    assert (img.format, img.size, img.mode) == ("PNG", (64, 48), "RGBA")
    alphas = set(img.tobytes()[3::4])
    assert alphas == {0, 255}  # transparent background, opaque sprite
    assert len(img.getcolors(4096) or []) >= 4  # a real little palette
    assert again.json()["image"] == data["image"]  # deterministic


def test_bitforge_and_v1_pixflux(fake: FakePixelLab) -> None:
    bitforge = {"description": "tree", "image_size": {"width": 200, "height": 200}}
    with api(fake) as client:
        r = client.post("/create-image-bitforge", json=bitforge)
        assert r.status_code == 200
        assert png_of(r.json()["image"]).size == (200, 200)
        too_big = {"description": "tree", "image_size": {"width": 201, "height": 100}}
        assert client.post("/create-image-bitforge", json=too_big).status_code == 422
    with httpx.Client(base_url=fake.v1_url, headers={"Authorization": f"Bearer {TOKEN}"}) as v1:
        # the body pixellab 1.0.5 sends, with its explicit nulls
        sdk_body = {**PIXFLUX, "negative_description": "", "text_guidance_scale": 8,
                    "outline": None, "view": None, "isometric": False, "init_image": None,
                    "init_image_strength": 300, "seed": 0}  # fmt: skip
        r = v1.post("/generate-image-pixflux", json=sdk_body)
        assert r.status_code == 200
        assert r.json()["usage"] == {"type": "usd", "usd": 0.01}
        assert v1.get("/balance").json() == {"type": "usd", "usd": 999.98}


@pytest.mark.parametrize("encoding", ["data_uri", "rgba_bytes"])
def test_alternative_image_encodings(make_fake: MakeFake, encoding: str) -> None:
    fake = make_fake(image_encoding=encoding)
    with api(fake) as client:
        image = client.post("/create-image-pixflux", json=PIXFLUX).json()["image"]
    if encoding == "data_uri":
        assert image["base64"].startswith("data:image/png;base64,")
        assert png_of(image).size == (64, 48)
    else:
        assert (image["type"], image["width"], image["height"]) == ("rgba_bytes", 64, 48)
        assert len(base64.b64decode(image["base64"])) == 64 * 48 * 4


# -- validation ------------------------------------------------------------------------------


def test_422_is_fastapi_shaped_and_free(fake: FakePixelLab) -> None:
    long = "x" * 2001
    with api(fake) as client:
        r = client.post("/generate-image-v2", json={**PRO, "description": long})
        bad_size = client.post(
            "/create-image-pixflux",
            json={"description": "x", "image_size": {"width": 8, "height": 20}},
        )
        small_area = client.post(
            "/create-image-pixflux",
            json={"description": "x", "image_size": {"width": 20, "height": 20}},
        )
        missing = client.post("/create-image-pixflux", json={"description": "x"})
        not_json = client.post(
            "/create-image-pixflux", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 422
    assert r.json() == {"detail": [{"type": "string_too_long", "loc": ["body", "description"],
                                    "msg": "String should have at most 2000 characters",
                                    "input": long}]}  # fmt: skip
    assert bad_size.json()["detail"] == [{
        "type": "greater_than_equal", "loc": ["body", "image_size", "width"],
        "msg": "Input should be greater than or equal to 16", "input": 8,
    }]  # fmt: skip
    area = small_area.json()["detail"][0]
    assert (area["type"], area["loc"]) == ("value_error", ["body", "image_size"])
    assert missing.json()["detail"][0]["type"] == "missing"
    assert missing.json()["detail"][0]["loc"] == ["body", "image_size"]
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["type"] == "json_invalid"
    stats = fake.stats()
    assert stats["charges"] == 0
    assert stats["balance_usd"] == 1000.0
    assert stats["submits_by_operation"] == {"generate-image-v2": 1, "create-image-pixflux": 4}


def test_unknown_path_and_wrong_method(fake: FakePixelLab) -> None:
    with api(fake) as client:
        assert client.post("/no-such-thing", json={"a": 1}).json() == {"detail": "Not Found"}
        assert client.get("/create-image-pixflux").status_code == 405
        assert client.post("/balance").status_code == 405
        # the same keep-alive connection still works after an unread body
        assert client.get("/balance").status_code == 200


# -- async routes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "count"), [(16, 64), (42, 64), (43, 16), (85, 16), (86, 4), (170, 4), (171, 1)]
)
def test_pro_image_count_rule(side: int, count: int) -> None:
    assert pro_image_count(side, 16) == count


def test_generate_image_v2_202_then_polls_then_completed(fake: FakePixelLab) -> None:
    with api(fake) as client:
        r = client.post("/generate-image-v2", json=PRO)
        assert r.status_code == 202
        assert set(r.json()) == {"background_job_id", "status"}
        job_id = r.json()["background_job_id"]
        first = client.get(f"/background-jobs/{job_id}").json()
        second = client.get(f"/background-jobs/{job_id}").json()
    assert first["status"] == "processing"
    assert first["last_response"] is None
    assert first["usage"] is None
    assert set(first) == {"id", "status", "created_at", "last_response", "usage"}
    assert second["status"] == "completed"
    assert second["usage"] == {"type": "usd", "usd": 0.05, "generations": 5}
    images = second["last_response"]["images"]
    assert len(images) == 4
    assert {png_of(i).size for i in images} == {(100, 100)}
    assert len({i["base64"] for i in images}) == 4  # four different sprites
    assert fake.stats()["polls_by_job"] == {job_id: 2}


def test_v3_routes_answer_200_with_a_job_id(fake: FakePixelLab) -> None:
    with api(fake) as client:
        rot = client.post("/generate-8-rotations-v3", json={"description": "robot"})
        anim = client.post(
            "/animate-with-text-v3", json={"description": "robot", "action": "wave", "n_frames": 6}
        )
        assert (rot.status_code, anim.status_code) == (200, 200)
        rot_done = poll_until_done(client, rot.json()["background_job_id"])
        anim_done = poll_until_done(client, anim.json()["background_job_id"])
    assert len(rot_done["last_response"]["images"]) == 8
    assert len(anim_done["last_response"]["images"]) == 6


def test_legacy_job_id_route(fake: FakePixelLab) -> None:
    body = {"lower_description": "water", "upper_description": "sand"}
    with api(fake) as client:
        r = client.post("/create-tileset", json=body)
        assert r.status_code == 200
        assert "background_job_id" not in r.json()
        assert {"job_id", "tileset_id"} <= set(r.json())
        done = poll_until_done(client, r.json()["job_id"])
    assert len(done["last_response"]["images"]) == 16
    assert png_of(done["last_response"]["images"][0]).size == (16, 16)


def test_character_then_animate_character_gives_one_job_per_direction(
    fake: FakePixelLab,
) -> None:
    with api(fake) as client:
        created = client.post("/create-character-with-4-directions", json={"description": "elf"})
        assert created.status_code == 200
        character_id = created.json()["character_id"]
        done = poll_until_done(client, created.json()["background_job_id"])
        assert len(done["last_response"]["images"]) == 4
        r = client.post("/animate-character", json={"character_id": character_id, "action": "run"})
        assert r.status_code == 200
        assert r.json()["character_id"] == character_id
        job_ids = r.json()["background_job_ids"]
        assert len(set(job_ids)) == 4
        results = [poll_until_done(client, j) for j in job_ids]
        unknown = client.post("/animate-character", json={"character_id": "nope", "action": "x"})
    assert all(len(res["last_response"]["images"]) == 4 for res in results)
    assert unknown.status_code == 404
    ledger = fake.ledger()
    assert [c["operation"] for c in ledger] == ["create-character-with-4-directions",
                                                "animate-character"]  # fmt: skip
    assert ledger[1]["remote_job_ids"] == job_ids  # one charge for the four jobs


def test_unknown_and_foreign_jobs_are_404(fake: FakePixelLab) -> None:
    with api(fake) as client, api(fake, OTHER) as other:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        for c, jid in ((client, "does-not-exist"), (other, job_id)):
            r = c.get(f"/background-jobs/{jid}")
            assert r.status_code == 404
            assert r.json() == {"detail": "Job not found or doesn't belong to you"}
        assert client.get(f"/background-jobs/{job_id}").status_code == 200


def test_finished_jobs_expire_after_the_ttl(make_fake: MakeFake) -> None:
    fake = make_fake(job_ttl_seconds=60, complete_after_polls=1)
    with api(fake) as client:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        assert client.get(f"/background-jobs/{job_id}").json()["status"] == "completed"
        fake.advance_clock(59)
        assert client.get(f"/background-jobs/{job_id}").status_code == 200
        fake.advance_clock(2)
        assert client.get(f"/background-jobs/{job_id}").status_code == 404


def test_jobs_also_finish_by_time(make_fake: MakeFake) -> None:
    fake = make_fake(complete_after_polls=100, complete_after_seconds=30)
    with api(fake) as client:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        assert fake.stats()["in_flight"] == {"main": 1}
        fake.advance_clock(31)
        assert fake.stats()["in_flight"] == {}
        assert client.get(f"/background-jobs/{job_id}").json()["status"] == "completed"


def test_423_mode_and_unknown_status_word(make_fake: MakeFake) -> None:
    locked = make_fake(locked_while_processing=True)
    with api(locked) as client:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        r = client.get(f"/background-jobs/{job_id}")
        assert (r.status_code, r.json()) == (423, {"detail": "Job is still being generated"})
        assert client.get(f"/background-jobs/{job_id}").json()["status"] == "completed"
    wordy = make_fake(progress_status="finalizing", complete_after_polls=3)
    with api(wordy) as client:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        words = [client.get(f"/background-jobs/{job_id}").json()["status"] for _ in range(3)]
    assert words == ["processing", "finalizing", "completed"]


def test_single_image_result_shape(make_fake: MakeFake) -> None:
    fake = make_fake(result_shape="image_when_single", complete_after_polls=1)
    big = {"description": "castle", "image_size": {"width": 200, "height": 200}}
    with api(fake) as client:
        job_id = client.post("/generate-image-v2", json=big).json()["background_job_id"]
        last = client.get(f"/background-jobs/{job_id}").json()["last_response"]
    assert set(last) == {"image"}
    assert png_of(last["image"]).size == (200, 200)


# -- billing ---------------------------------------------------------------------------------


def test_balance_exhausted_gives_402(fake: FakePixelLab) -> None:
    fake.set_balance(0.015)
    with api(fake) as client:
        assert client.post("/create-image-pixflux", json=PIXFLUX).status_code == 200
        r = client.post("/create-image-pixflux", json=PIXFLUX)
        assert (r.status_code, r.json()) == (402, {"detail": "Insufficient credits"})
        assert client.post("/generate-image-v2", json=PRO).status_code == 402
        balance = client.get("/balance").json()
    assert balance["credits"] == {"type": "usd", "usd": 0.005}
    assert balance["subscription"]["status"] == "active"
    stats = fake.stats()
    assert stats["charges"] == 1
    assert stats["errors"]["402"] == 2
    assert stats["in_flight"] == {}


def test_failed_jobs_are_still_charged(fake: FakePixelLab) -> None:
    with api(fake) as client:
        job_id = client.post("/generate-image-v2", json=PRO).json()["background_job_id"]
        fake.fail_job(job_id, "NSFW content detected")
        done = poll_until_done(client, job_id)
    assert done["status"] == "failed"
    assert done["last_response"] == {"detail": "NSFW content detected"}
    assert fake.stats()["total_charged_usd"] == 0.05


def test_client_job_key_ledger(fake: FakePixelLab) -> None:
    with api(fake) as client:
        for key in ("q-1", "q-2"):
            r = client.post("/generate-image-v2", json=PRO, headers={"X-Client-Job-Id": key})
            job_id = r.json()["background_job_id"]
            for _ in range(2):
                client.get(f"/background-jobs/{job_id}", headers={"X-Client-Job-Id": key})
        client.post("/create-image-pixflux", json=PIXFLUX, headers={"X-Client-Job-Id": "q-3"})
        client.post("/create-image-pixflux", json={}, headers={"X-Client-Job-Id": "q-3"})
    stats = fake.stats()
    assert stats["submits_by_client_job"] == {"q-1": 1, "q-2": 1, "q-3": 2}
    assert stats["charges_by_client_job"] == {"q-1": 1, "q-2": 1, "q-3": 1}
    assert stats["polls_by_client_job"] == {"q-1": 2, "q-2": 2}
    record = stats["ledger"][0]
    assert record["client_job_id"] == "q-1"
    assert record["token_label"] == "main"
    assert record["operation"] == "generate-image-v2"
    assert len(record["remote_job_ids"]) == 1
    assert set(record) >= {"at", "usd", "balance_after"}


# -- internals -------------------------------------------------------------------------------


def test_sprites_are_deterministic_and_sized() -> None:
    spec = ImageSpec("slime", 3, 37, 23, transparent=False)
    assert sprite_rgba(spec) == sprite_rgba(spec)
    assert sprite_rgba(spec, 1) != sprite_rgba(spec, 0)
    img = Image.open(io.BytesIO(encode_png(37, 23, sprite_rgba(spec))))
    assert img.size == (37, 23)
    assert set(img.convert("RGBA").tobytes()[3::4]) == {255}


def test_route_table_is_data() -> None:
    by_op = {r.operation: r for r in ROUTES}
    assert by_op["generate-image-v2"].submit_status == 202
    assert by_op["create-tileset"].id_field == "job_id"
    assert by_op["animate-character"].id_field == "background_job_ids"
    assert all(r.path.startswith(("/v1/", "/v2/")) for r in ROUTES)
    assert json.dumps([r.operation for r in ROUTES])
