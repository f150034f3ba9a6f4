"""Configuration of the fake PixelLab server and its presets.

Owns: :class:`FakeOptions` (every knob, with test-friendly defaults) and the presets
:meth:`FakeOptions.realistic` (slow, for manual runs) and :meth:`FakeOptions.demo`
(realistic-ish timing plus the seeded :func:`demo_fault_mix`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from genqueue.providers.fake_pixellab.faults import FaultRule, demo_fault_mix
from genqueue.providers.fake_pixellab.png import ImageEncoding

DEFAULT_TOKEN = "fake-pixellab-token"  # noqa: S105 - a documented fake credential


@dataclass(frozen=True)
class FakeOptions:
    """Knobs of one fake PixelLab server (all optional).

    Accounts and billing:
        tokens: bearer token -> label. Labels must be unique; stats, logs and fault rules
            only ever show labels, never tokens.
        balance_usd: starting account balance (one balance shared by all tokens).
        costs_usd: per-operation cost overrides (operation name -> USD per accepted submit).
        subscription_generations: the ``total`` shown in the v2 ``/balance`` subscription.
        settlement_lag: seconds before a charge shows in ``GET /balance`` (PixelLab settles
            billing late); an ``(lo, hi)`` pair picks a seeded random lag per charge. The
            402 check always uses the true balance.

    Jobs:
        complete_after_polls: the poll that returns the terminal state (1 = the first
            poll); an ``(lo, hi)`` pair picks a seeded random count per job.
        complete_after_seconds: also finish a job this long after submit, polled or not
            (None = only by polls). Frees the concurrency slot of jobs nobody polls.
        progress_status: status word of in-progress polls after the first (the first
            always says ``processing``), e.g. ``"finalizing"`` to test unknown words.
        locked_while_processing: answer ``423 Job is still being generated`` while a job is
            in progress instead of ``200 processing``.
        job_ttl_seconds: finished jobs answer 404 this long after finishing (None = never).
        max_images_per_job: cap the image count of a job (speed); None = the real rule.
        result_shape: ``"images"`` always answers ``last_response.images``;
            ``"image_when_single"`` answers ``last_response.image`` for one-image jobs.

    Limits:
        max_concurrent_jobs: in-flight async submits per token before ``429`` (a submit
            holds its slot until all of its jobs finish).
        max_concurrent_sync: concurrent sync requests per token before ``529``.
        retry_after_seconds: ``Retry-After`` on 429/529 answers (None = no header).

    Output, latency, faults, misc:
        image_encoding: ``"base64"``, ``"data_uri"`` (``data:image/png;base64,`` prefix) or
            ``"rgba_bytes"`` (raw RGBA, ``{"type": "rgba_bytes", "width", "height"}``).
        sync_latency: ``(min, max)`` seconds slept by sync routes after accepting.
        latency: per-operation ``(min, max)`` overrides (also for async submits).
        faults: fault rules installed at start (and again by ``reset``).
        seed: seeds latency jitter and random poll counts.
        access_log: write one line per request to stderr (off by default).
    """

    tokens: dict[str, str] = field(default_factory=lambda: {DEFAULT_TOKEN: "default"})
    balance_usd: float = 1000.0
    costs_usd: dict[str, float] = field(default_factory=dict)
    subscription_generations: int = 5000
    settlement_lag: float | tuple[float, float] = 0.0
    complete_after_polls: int | tuple[int, int] = 2
    complete_after_seconds: float | None = 60.0
    progress_status: str = "processing"
    locked_while_processing: bool = False
    job_ttl_seconds: float | None = None
    max_images_per_job: int | None = None
    result_shape: Literal["images", "image_when_single"] = "images"
    max_concurrent_jobs: int = 4
    max_concurrent_sync: int = 8
    retry_after_seconds: int | None = None
    image_encoding: ImageEncoding = "base64"
    sync_latency: tuple[float, float] = (0.0, 0.0)
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)
    faults: tuple[FaultRule, ...] = ()
    seed: int = 0
    access_log: bool = False

    def __post_init__(self) -> None:
        labels = list(self.tokens.values())
        if len(set(labels)) != len(labels):
            raise ValueError("token labels must be unique")
        if self.max_concurrent_jobs < 1 or self.max_concurrent_sync < 1:
            raise ValueError("concurrency limits must be >= 1")

    def replace(self, **changes: Any) -> FakeOptions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def realistic(cls, **changes: Any) -> FakeOptions:
        """Manual-run timing: sync calls take 0.5-3 s, async jobs finish after 3-8 polls
        (or 120 s), jobs expire 10 minutes after finishing, ``Retry-After: 5`` on 429,
        charges show in the balance 5-30 s late."""
        base = cls(
            sync_latency=(0.5, 3.0),
            complete_after_polls=(3, 8),
            complete_after_seconds=120.0,
            job_ttl_seconds=600.0,
            retry_after_seconds=5,
            settlement_lag=(5.0, 30.0),
        )
        return base.replace(**changes)

    @classmethod
    def demo(cls, seed: int = 0, **changes: Any) -> FakeOptions:
        """The demo: quicker than :meth:`realistic` (sync 0.2-1 s, 2-5 polls or 30 s,
        charges settle 0.2-1 s late),
        3 concurrent jobs per token with ``Retry-After: 2``, and :func:`demo_fault_mix`
        seeded with ``seed`` (deterministic for a given request order)."""
        base = cls(
            sync_latency=(0.2, 1.0),
            complete_after_polls=(2, 5),
            complete_after_seconds=30.0,
            job_ttl_seconds=600.0,
            max_concurrent_jobs=3,
            retry_after_seconds=2,
            settlement_lag=(0.2, 1.0),
            faults=tuple(demo_fault_mix(seed)),
            seed=seed,
        )
        return base.replace(**changes)
