"""The provider contract: submit a generation, poll a remote job, and what errors carry.

A provider's ``submit`` either finishes the work at once (``Completed``) or returns a
``RemoteRef`` to poll. ``poll`` answers ``Pending`` or ``Completed`` and raises
``ProviderError`` on failure. Errors carry the error kind (for the core's classifier),
the HTTP status, the provider's ``detail``, ``retry_after`` and ``maybe_charged``: whether
the provider may have billed the attempt, which decides if resubmitting is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from genqueue.classify import ErrorKind, TaskError


@dataclass(frozen=True)
class GenerationRequest:
    job_id: str
    operation: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class RemoteRef:
    """A job running at the provider; its ids are stored on our job before polling."""

    operation: str
    remote_job_ids: tuple[str, ...]
    #: Other ids the provider returned (character_id, tileset_id, ...).
    extra_ids: Mapping[str, str] = field(default_factory=dict)

    @property
    def remote_job_id(self) -> str:
        """All remote ids as one string (comma-separated), as stored on the job."""
        return ",".join(self.remote_job_ids)

    @classmethod
    def parse(cls, operation: str, stored: str) -> RemoteRef:
        return cls(operation, tuple(i for i in stored.split(",") if i))


@dataclass(frozen=True)
class Usage:
    usd: float = 0.0
    generations: float = 0.0

    def as_cost(self) -> dict[str, float]:
        return {k: v for k, v in (("usd", self.usd), ("generations", self.generations)) if v}


@dataclass
class Completed:
    images: list[bytes]
    usage: Usage | None = None
    #: The provider's response with image payloads elided (for the job's result).
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    status: str


class ProviderError(TaskError):
    """A failure reported by (or on the way to) a provider."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        status: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
        maybe_charged: bool = False,
        remote_job_id: str | None = None,
        retryable: bool | None = None,
        usage: Usage | None = None,
    ) -> None:
        details: dict[str, Any] = {"maybe_charged": maybe_charged}
        if detail is not None:
            details["detail"] = detail
        if remote_job_id:
            details["remote_job_id"] = remote_job_id
        super().__init__(
            message,
            kind=kind,
            status=status,
            retry_after=retry_after,
            retryable=retryable,
            details=details,
        )
        self.detail = detail
        self.maybe_charged = maybe_charged
        self.remote_job_id = remote_job_id
        #: What the provider says this failed work cost (a failed remote job is billed).
        self.usage = usage


class Provider(Protocol):
    name: str

    async def submit(self, request: GenerationRequest) -> Completed | RemoteRef: ...

    async def poll(self, ref: RemoteRef) -> Pending | Completed: ...
