"""The fake PixelLab server's limits, fault injection, control API, secrets and lifecycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.providers.conftest import MakeFake

from genqueue.providers.fake_pixellab import (
    FakeOptions,
    FakePixelLab,
    FaultRule,
    accept_then_fail,
    delay_fault,
    demo_fault_mix,
    drop_fault,
    fail_job,
    gateway_fault,
    hang_fault,
    serve,
    status_fault,
)
from genqueue.providers.fake_pixellab.faults import FaultBook

TOKEN = "test-key-123"
OTHER = "other-key-456"
PIXFLUX = {"description": "a tiny knight", "image_size": {"width": 64, "height": 48}}
PRO = {"description": "a cat", "image_size": {"width": 100, "height": 100}}
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


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


def api(fake: FakePixelLab, token: str = TOKEN, timeout: float = 5.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=fake.base_url, headers=headers, timeout=timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def submit_job(client: httpx.Client) -> httpx.Response:
    return client.post("/generate-image-v2", json=PRO)


# -- concurrency limits ----------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [3, None])
def test_concurrency_limit_429_and_peak_after_first_429(
    make_fake: MakeFake, retry_after: int | None
) -> None:
    fake = make_fake(max_concurrent_jobs=2, retry_after_seconds=retry_after)
    with api(fake) as client, api(fake, OTHER) as other:
        first, second = submit_job(client), submit_job(client)
        assert (first.status_code, second.status_code) == (202, 202)
        rejected = submit_job(client)
        assert rejected.status_code == 429
        assert rejected.json() == {"detail": "Too many concurrent jobs"}
        assert rejected.headers.get("Retry-After") == (str(retry_after) if retry_after else None)
        assert submit_job(other).status_code == 202  # the limit is per token
        job_id = first.json()["background_job_id"]
        for _ in range(2):
            client.get(f"/background-jobs/{job_id}")  # completes: frees a slot
        assert submit_job(client).status_code == 202
    stats = fake.stats()
    assert stats["peak_in_flight"] == {"main": 2, "other": 1}
    assert stats["rejected_429"] == {"main": 1}
    assert stats["peak_in_flight_after_first_429"] == {"main": 2}
    assert stats["in_flight"] == {"main": 2, "other": 1}
    assert stats["errors"]["429"] == 1
    assert stats["charges"] == 4  # the 429 was free


def test_sync_overload_gives_529(make_fake: MakeFake) -> None:
    fake = make_fake(max_concurrent_sync=1, latency={"create-image-pixflux": (0.4, 0.4)})
    results: list[int] = []

    def slow_call() -> None:
        with api(fake) as client:
            results.append(client.post("/create-image-pixflux", json=PIXFLUX).status_code)

    worker = threading.Thread(target=slow_call)
    worker.start()
    wait_until(lambda: fake.stats()["peak_sync_in_flight"].get("main") == 1)
    with api(fake) as client, api(fake, OTHER) as other:
        r = client.post("/create-image-pixflux", json=PIXFLUX)
        assert (r.status_code, r.json()) == (529, {"detail": "Rate limit exceeded"})
        # other tokens have their own slots (and wait their own 0.4 s)
        assert other.post("/create-image-pixflux", json=PIXFLUX).status_code == 200
    worker.join(5)
    assert results == [200]
    assert fake.stats()["errors"]["529"] == 1


# -- faults ----------------------------------------------------------------------------------


def test_status_fault_with_non_json_body_is_not_charged(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-*", gateway_fault(502), times=2)
    with api(fake) as client:
        for _ in range(2):
            r = client.post("/create-image-pixflux", json=PIXFLUX)
            assert r.status_code == 502
            assert r.headers["content-type"].startswith("text/html")
            assert "Bad Gateway" in r.text
            with pytest.raises(json.JSONDecodeError):
                r.json()
        assert client.post("/create-image-bitforge", json=PIXFLUX).status_code == 200
        fake.add_fault("GET /v2/balance", status_fault(503, body={"detail": "maintenance"}))
        r = client.get("/balance")
        assert (r.status_code, r.json()) == (503, {"detail": "maintenance"})
    stats = fake.stats()
    assert stats["charges"] == 1
    assert stats["errors"]["5xx"] == 3
    assert stats["faults_fired"] == {"status": 3}


def test_fault_rules_nth_times_token_and_headers_over_http(fake: FakePixelLab) -> None:
    rule = {
        "match": "GET /v2/balance",
        "nth": 2,
        "times": 1,
        "token_label": "main",
        "fault": {"kind": "status", "status": 503, "body": {"detail": "busy"},
                  "headers": {"Retry-After": "7"}},
    }  # fmt: skip
    with httpx.Client(base_url=fake.root_url) as control:
        assert control.post("/_fake/faults", json=rule).json() == {"ids": ["f1"]}
        bad = control.post("/_fake/faults", json={"match": "nonsense", "fault": {"kind": "x"}})
        assert bad.status_code == 422
        with api(fake) as client, api(fake, OTHER) as other:
            assert other.get("/balance").status_code == 200  # other token: not matched
            codes = [client.get("/balance").status_code for _ in range(3)]
            assert codes == [200, 503, 200]
        listed = control.get("/_fake/faults").json()["faults"]
        assert (listed[0]["seen"], listed[0]["fired"]) == (3, 1)
        assert control.delete("/_fake/faults").status_code == 200
        assert control.get("/_fake/faults").json() == {"faults": []}


def test_delay_fault(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-pixflux", delay_fault(0.3))
    with api(fake) as client:
        started = time.monotonic()
        r = client.post("/create-image-pixflux", json=PIXFLUX)
    assert r.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert fake.stats()["charges"] == 1


def test_hang_fault_until_the_client_times_out(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/generate-image-v2", hang_fault())
    with api(fake, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            submit_job(client)
        assert submit_job(client).status_code == 202  # times=1: the next one is fine
    stats = fake.stats()
    assert stats["hung_requests"] == 1
    assert stats["charges"] == 1


@pytest.mark.parametrize("after_body", [False, True])
def test_dropped_connection(fake: FakePixelLab, after_body: bool) -> None:
    fake.add_fault("POST /v2/create-image-pixflux", drop_fault(after_body=after_body))
    with api(fake) as client:
        with pytest.raises(DROPPED):
            client.post("/create-image-pixflux", json=PIXFLUX)
        assert client.post("/create-image-pixflux", json=PIXFLUX).status_code == 200
    stats = fake.stats()
    assert stats["dropped_connections"] == 1
    assert stats["charges"] == 1
    assert stats["submits_by_operation"] == {"create-image-pixflux": 2}


def test_accept_then_fail_sync_charges_but_answers_500(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-pixflux", accept_then_fail())
    with api(fake) as client:
        r = client.post("/create-image-pixflux", json=PIXFLUX, headers={"X-Client-Job-Id": "q-9"})
    assert (r.status_code, r.json()) == (500, {"detail": "Internal Server Error"})
    stats = fake.stats()
    assert stats["charges_by_client_job"] == {"q-9": 1}
    assert stats["total_charged_usd"] == 0.01


def test_accept_then_drop_async_creates_a_charged_job(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/generate-image-v2", accept_then_fail(drop=True))
    with api(fake) as client:
        with pytest.raises(DROPPED):
            submit_job(client)
        stats = fake.stats()
        assert stats["in_flight"] == {"main": 1}
        (job_id,) = stats["ledger"][0]["remote_job_ids"]
        client.get(f"/background-jobs/{job_id}")
        assert client.get(f"/background-jobs/{job_id}").json()["status"] == "completed"


def test_fail_job_fault_on_submit_and_on_poll(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/generate-image-v2", fail_job("model exploded"))
    with api(fake) as client:
        job_id = submit_job(client).json()["background_job_id"]
        bodies = [client.get(f"/background-jobs/{job_id}").json() for _ in range(2)]
        assert [b["status"] for b in bodies] == ["processing", "failed"]
        assert bodies[1]["last_response"] == {"detail": "model exploded"}
        assert bodies[1]["usage"]["usd"] == 0.05
        second = submit_job(client).json()["background_job_id"]
        fake.add_fault("GET /v2/background-jobs/*", fail_job("too spicy", job_status="review"))
        words = [client.get(f"/background-jobs/{second}").json()["status"] for _ in range(2)]
        assert words == ["processing", "review"]
        third = submit_job(client).json()["background_job_id"]
        with httpx.Client(base_url=fake.root_url) as control:
            r = control.post(f"/_fake/jobs/{third}/fail", json={"detail": "gone"})
            assert r.status_code == 200
            assert control.post("/_fake/jobs/nope/fail", json={}).status_code == 404
        last = [client.get(f"/background-jobs/{third}").json() for _ in range(2)][-1]
        assert (last["status"], last["last_response"]) == ("failed", {"detail": "gone"})
    assert fake.stats()["charges"] == 3


def test_probabilistic_rules_are_deterministic_per_seed() -> None:
    def fired(seed: int) -> list[bool]:
        book = FaultBook()
        book.add(FaultRule(match="POST /v2/*", fault=gateway_fault(), times=None,
                           probability=0.3, seed=seed))  # fmt: skip
        return [book.pick("POST", "/v2/generate-image-v2", "main") is not None for _ in range(200)]

    assert fired(1) == fired(1)
    assert fired(1) != fired(2)
    assert 30 < sum(fired(1)) < 90


def test_demo_and_realistic_presets() -> None:
    demo = FakeOptions.demo(seed=4)
    assert demo.faults == tuple(demo_fault_mix(4))
    kinds = {rule.fault.kind for rule in demo.faults}
    assert {"status", "drop", "accept_then_fail", "fail_job"} <= kinds
    assert demo.retry_after_seconds == 2
    realistic = FakeOptions.realistic(balance_usd=5.0)
    assert realistic.sync_latency == (0.5, 3.0)
    assert realistic.balance_usd == 5.0
    with pytest.raises(ValueError, match="unique"):
        FakeOptions(tokens={"a": "same", "b": "same"})


def test_demo_mix_serves_a_mix_of_outcomes(make_fake: MakeFake) -> None:
    fake = make_fake(faults=tuple(demo_fault_mix(3)), max_concurrent_jobs=100)
    outcomes: set[str] = set()
    with api(fake, timeout=2.0) as client:
        for _ in range(120):
            try:
                outcomes.add(str(client.post("/create-image-pixflux", json=PIXFLUX).status_code))
            except DROPPED:
                outcomes.add("dropped")
    assert {"200", "502", "dropped"} <= outcomes


# -- secrets, control API, lifecycle ---------------------------------------------------------


def test_stats_and_errors_never_contain_a_token(fake: FakePixelLab) -> None:
    fake.add_fault("POST /v2/create-image-pixflux", gateway_fault(), token=TOKEN)
    texts: list[str] = []
    with api(fake) as client, api(fake, "not-a-real-token-999") as stranger:
        texts.append(client.post("/create-image-pixflux", json=PIXFLUX).text)
        texts.append(stranger.post("/create-image-pixflux", json=PIXFLUX).text)
        texts.append(client.post("/create-image-pixflux", json={}).text)
        texts.append(submit_job(client).text)
    with httpx.Client(base_url=fake.root_url) as control:
        texts.append(control.get("/_fake/stats").text)
        texts.append(control.get("/_fake/faults").text)
    texts.append(json.dumps(fake.stats()))
    texts.append(json.dumps(fake.faults()))
    for secret in (TOKEN, OTHER, "not-a-real-token-999"):
        assert not any(secret in text for text in texts)
    assert fake.faults()[0]["token_label"] == "main"


def test_control_api_balance_clock_tokens_reset(fake: FakePixelLab) -> None:
    with httpx.Client(base_url=fake.root_url) as control, api(fake) as client:
        assert control.get("/_fake/health").json() == {"ok": True}
        assert control.post("/_fake/balance", json={"usd": 0.001}).status_code == 200
        assert client.post("/create-image-pixflux", json=PIXFLUX).status_code == 402
        assert control.post("/_fake/tokens/main/revoke").json()["revoked"] is True
        assert client.get("/balance").status_code == 401
        assert control.post("/_fake/tokens/main/restore").status_code == 200
        new = {"token": "fresh-token", "label": "fresh"}
        assert control.post("/_fake/tokens", json=new).json() == {"label": "fresh"}
        assert control.post("/_fake/tokens", json={**new, "token": "x"}).status_code == 409
        assert control.post("/_fake/clock", json={"advance_seconds": 5}).status_code == 200
        assert control.post("/_fake/clock", json={"advance_seconds": -1}).status_code == 422
        assert control.get("/_fake/nope").status_code == 404
        assert control.post("/_fake/reset").status_code == 200
        assert client.post("/create-image-pixflux", json=PIXFLUX).status_code == 200
        assert control.get("/v2/_fake/stats").status_code == 404  # never under /v2
    stats = fake.stats()
    assert (stats["balance_usd"], stats["charges"], stats["requests"]) == (999.99, 1, 2)


def test_stop_is_fast_while_a_request_hangs() -> None:
    fake = FakePixelLab(FakeOptions(tokens={TOKEN: "main"})).start()
    fake.add_fault("POST /v2/*", hang_fault())
    errors: list[BaseException] = []

    def hanging_call() -> None:
        with api(fake, timeout=30.0) as client:
            try:
                submit_job(client)
            except httpx.HTTPError as exc:
                errors.append(exc)

    caller = threading.Thread(target=hanging_call)
    caller.start()
    wait_until(lambda: fake.stats()["hung_requests"] == 1)
    started = time.monotonic()
    fake.stop()
    caller.join(5)
    assert time.monotonic() - started < 1.0
    assert not caller.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], DROPPED)


def test_serve_runs_in_the_foreground_until_stopped() -> None:
    stop = threading.Event()
    ready: list[FakePixelLab] = []
    thread = threading.Thread(
        target=serve,
        kwargs={"port": 0, "options": FakeOptions(tokens={TOKEN: "main"}),
                "on_ready": ready.append, "stop_event": stop},
    )  # fmt: skip
    thread.start()
    wait_until(lambda: bool(ready))
    with api(ready[0]) as client:
        assert client.get("/balance").status_code == 200
    stop.set()
    thread.join(3)
    assert not thread.is_alive()


def test_only_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakePixelLab(host="0.0.0.0")
    with FakePixelLab(host="localhost") as fake:
        assert fake.base_url.endswith("/v2")


def test_access_log_is_off_by_default_and_never_shows_tokens(
    make_fake: MakeFake, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = make_fake()
    with api(quiet) as client:
        client.get("/balance")
    assert capsys.readouterr().err == ""
    loud = make_fake(access_log=True)
    with api(loud) as client:
        client.post("/create-image-pixflux", json=PIXFLUX)
    err = capsys.readouterr().err
    assert "POST /v2/create-image-pixflux" in err
    assert TOKEN not in err
