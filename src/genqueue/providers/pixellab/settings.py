"""Settings of the PixelLab integration: the key, where results go, and every policy knob."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genqueue.errors import InvalidInput
from genqueue.providers.breaker import BreakerSettings
from genqueue.providers.ledger import LedgerSettings

if TYPE_CHECKING:
    from genqueue.providers.pixellab.routes import Route

TASK = "pixellab.generate"
API_KEY_ENV = "PIXELLAB_API_KEY"
OUTPUT_ENV = "GENQUEUE_OUTPUT_DIR"


@dataclass(frozen=True)
class PixelLabSettings:
    api_key: str | None = None  # default: $PIXELLAB_API_KEY
    base_url: str | None = None  # default: $PIXELLAB_BASE_URL, else the real API
    output_dir: Path | None = None  # default: $GENQUEUE_OUTPUT_DIR, else ./genqueue-output
    queue: str = "pixellab"
    max_retries: int = 2
    poll_interval: float = 3.0
    #: Longest wait between polls after poll errors (they back off; they are not attempts).
    poll_backoff_cap: float = 60.0
    #: A remote job that polls 404 this soon after submit is "not visible yet", not lost.
    lost_grace: float = 30.0
    #: How long a remote job may run, from its submit (or the redrive that resumed it);
    #: None takes the route's (15 min by default). Then the job is dead-lettered.
    poll_deadline: float | None = None
    #: Read timeout of every request; None takes the route's (300 s sync, 60 s async).
    read_timeout: float | None = None
    #: Blind resends of a submit whose outcome is unknown, by route mode. Each one may pay
    #: a second time (counted as a possible duplicate charge); 0 leaves the decision to
    #: ``reconcile``.
    uncertain_resubmits_sync: int = 0
    uncertain_resubmits_async: int = 0
    #: Decide uncertain submits with the account balance (see ``genqueue.providers.ledger``);
    #: off, they go to the DLQ as ``submission_uncertain`` at once.
    reconcile: bool = True
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    max_rate_limit_waits: int = 10
    #: Upper bound of the learned concurrency limits (sync requests, async jobs).
    max_in_flight: int = 8
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    #: How long a job waits on an open breaker before it fails with the breaker's error.
    max_breaker_wait: float = 3600.0

    def resolved_key(self) -> str:
        key = self.api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise InvalidInput(f"no PixelLab API key: set {API_KEY_ENV}", field="api_key")
        return key

    def resolved_output(self) -> Path:
        return self.output_dir or Path(os.environ.get(OUTPUT_ENV) or "genqueue-output")

    def read_timeout_for(self, route: Route) -> float:
        return self.read_timeout if self.read_timeout is not None else route.read_timeout

    def deadline_for(self, route: Route) -> float:
        return self.poll_deadline or route.deadline

    def resubmits_allowed(self, route: Route) -> int:
        if route.mode == "sync":
            return self.uncertain_resubmits_sync
        return self.uncertain_resubmits_async
