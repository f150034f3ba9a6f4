"""Error classification: what kind of failure an exception is, and whether to retry it.

``ErrorClassifier.classify(exc)`` looks, in order, at: a typed ``TaskError`` (or anything
with an ``error_kind``), an HTTP status code (``status``, ``status_code``,
``response.status_code``), OS/socket errors and errno codes, well-known exception types
(timeouts, connection errors, validation errors), then the message text. ``None``
classifies as ``unknown``, and so does a ``BaseException`` that is no ``Exception``
(``SystemExit``, ``KeyboardInterrupt``... raised by a task) unless a rule says otherwise.
Rules are data (``ClassifierRules``) so that a queue or a task can add its own and change
which kinds are retried.

This module decides nothing about *when* to retry; that is ``genqueue.retry``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from genqueue.choices import parse_choice, parse_choices
from genqueue.redact import Redactor


class ErrorKind(StrEnum):
    AUTH = "auth"
    PAYMENT = "payment"
    VALIDATION = "validation"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    TIMEOUT = "timeout"
    NETWORK = "network"
    REMOTE_FAILED = "remote_failed"
    #: The provider no longer knows a remote job we were polling (expired or cleaned up).
    REMOTE_LOST = "remote_lost"
    #: A submission's outcome is unknown (crash or read timeout after sending) and
    #: resubmitting could pay twice.
    SUBMISSION_UNCERTAIN = "submission_uncertain"
    WORKER_LOST = "worker_lost"
    UNKNOWN = "unknown"


DEFAULT_RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.NETWORK,
        ErrorKind.WORKER_LOST,
    }
)


class TaskError(Exception):
    """A failure whose kind is known; tasks and providers raise it (or subclass it)."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | str = ErrorKind.UNKNOWN,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_kind = parse_choice(ErrorKind, kind, "kind", "kinds")
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.details = dict(details or {})


@dataclass(frozen=True, slots=True)
class ClassifiedError:
    """An exception reduced to what genqueue stores and decides on."""

    kind: ErrorKind
    retryable: bool
    message: str
    type: str
    stack: str | None = None
    status: int | None = None
    retry_after: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.type, self.message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "retryable": self.retryable,
            "type": self.type,
            "message": self.message,
            "stack": self.stack,
            "status": self.status,
            "retry_after": self.retry_after,
            "fingerprint": self.fingerprint,
        }
        if self.details:
            out["details"] = dict(self.details)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ClassifiedError:
        return cls(
            kind=_kind_or_unknown(raw.get("kind")),
            retryable=bool(raw.get("retryable", False)),
            message=str(raw.get("message", "")),
            type=str(raw.get("type", "")),
            stack=raw.get("stack"),
            status=raw.get("status"),
            retry_after=raw.get("retry_after"),
            details=dict(raw.get("details") or {}),
        )


def _kind_or_unknown(value: Any) -> ErrorKind:
    try:
        return _KINDS.get(value, ErrorKind.UNKNOWN)
    except TypeError:  # unhashable
        return ErrorKind.UNKNOWN


#: Lookup by value (calling the enum class is slow, and pages decode thousands).
_KINDS: dict[Any, ErrorKind] = {kind.value: kind for kind in ErrorKind}

_NORMALISERS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalise_message(message: str) -> str:
    """The message with ids, numbers and quoted values replaced, so equal failures group."""
    text = message.strip().lower()[:500]
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text


def fingerprint(error_type: str, message: str) -> str:
    """A short stable hash of the error type and normalised message."""
    if len(message) > _CACHED_MESSAGE_MAX:
        return _fingerprint(error_type, message)
    return _cached_fingerprint(error_type, message)


def _fingerprint(error_type: str, message: str) -> str:
    digest = hashlib.sha1(
        f"{error_type}\n{normalise_message(message)}".encode(), usedforsecurity=False
    )
    return digest.hexdigest()[:16]


# Every stored error shows its fingerprint (to_dict), and the same few failures repeat
# across thousands of dead jobs: an export or a page would otherwise run the five
# normalising regexes and a SHA-1 for every attempt. Long messages are not kept.
_CACHED_MESSAGE_MAX = 1000
_cached_fingerprint = functools.lru_cache(maxsize=4096)(_fingerprint)


# -- the classifier ---------------------------------------------------------------------

Rule = Callable[[BaseException], "ErrorKind | None"]


@dataclass(frozen=True)
class ClassifierRules:
    """What a queue or task adds to the default classification.

    ``rules`` run first (the first to return a kind wins); ``kinds`` maps exception types
    to kinds; ``retryable`` replaces the set of kinds that are retried.
    """

    rules: tuple[Rule, ...] = ()
    kinds: tuple[tuple[type[BaseException], ErrorKind], ...] = ()
    retryable: frozenset[ErrorKind] | None = None

    @classmethod
    def build(
        cls,
        *,
        rules: Iterable[Rule] = (),
        kinds: Mapping[type[BaseException], ErrorKind | str] | None = None,
        retryable: Iterable[ErrorKind | str] | None = None,
    ) -> ClassifierRules:
        return cls(
            rules=tuple(rules),
            kinds=tuple(
                (t, parse_choice(ErrorKind, k, "kind", "kinds")) for t, k in (kinds or {}).items()
            ),
            retryable=(
                None
                if retryable is None
                else parse_choices(ErrorKind, retryable, "retryable", "kinds")
            ),
        )

    def merged(self, more: ClassifierRules | None) -> ClassifierRules:
        """These rules with ``more`` (more specific: task over queue over app) taking precedence."""
        if more is None:
            return self
        return replace(
            self,
            rules=more.rules + self.rules,
            kinds=more.kinds + self.kinds,
            retryable=more.retryable if more.retryable is not None else self.retryable,
        )


_STATUS_KINDS: dict[int, ErrorKind] = {
    400: ErrorKind.VALIDATION,
    401: ErrorKind.AUTH,
    402: ErrorKind.PAYMENT,
    403: ErrorKind.AUTH,
    404: ErrorKind.VALIDATION,
    408: ErrorKind.TIMEOUT,
    409: ErrorKind.VALIDATION,
    422: ErrorKind.VALIDATION,
    429: ErrorKind.RATE_LIMITED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.RATE_LIMITED,
}

_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "EHOSTDOWN",
        "EPIPE",
        "ENOTCONN",
        "EADDRNOTAVAIL",
    )
    if hasattr(errno, name)
)
_TIMEOUT_ERRNOS = frozenset({errno.ETIMEDOUT})
_NETWORK_CODES = frozenset(
    {
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENOTFOUND",
        "EAI_AGAIN",
        "EPIPE",
        "ENOTCONN",
    }
)
_TIMEOUT_CODES = frozenset({"ETIMEDOUT", "ESOCKETTIMEDOUT", "ECONNABORTED_TIMEOUT"})

_MESSAGE_RULES: list[tuple[re.Pattern[str], ErrorKind]] = [
    (re.compile(r"rate.?limit|too many (requests|concurrent)", re.I), ErrorKind.RATE_LIMITED),
    (re.compile(r"time[sd]?.?out|deadline exceeded", re.I), ErrorKind.TIMEOUT),
    (
        re.compile(
            r"connection (refused|reset|aborted|closed)|econn(refused|reset)|enotfound|"
            r"getaddrinfo|name or service not known|temporary failure in name resolution|"
            r"network (is )?unreachable|broken pipe|socket hang up",
            re.I,
        ),
        ErrorKind.NETWORK,
    ),
    (re.compile(r"unauthori[sz]ed|invalid (api )?(key|token)|forbidden", re.I), ErrorKind.AUTH),
    (
        re.compile(r"insufficient (credits|funds|generations)|payment required", re.I),
        ErrorKind.PAYMENT,
    ),
    (re.compile(r"internal server error|bad gateway|service unavailable", re.I), ErrorKind.SERVER),
]


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for attr in ("status", "status_code"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def kind_for_status(status: int) -> ErrorKind:
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if status >= 500:
        return ErrorKind.SERVER
    if 400 <= status < 500:
        return ErrorKind.VALIDATION
    return ErrorKind.UNKNOWN


def parse_retry_after(value: Any) -> float | None:
    """Seconds from a Retry-After value: a number of seconds or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after_of(exc: BaseException) -> float | None:
    direct = parse_retry_after(getattr(exc, "retry_after", None))
    if direct is not None:
        return direct
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is not None:
        try:
            return parse_retry_after(headers.get("retry-after"))
        except AttributeError:
            return None
    return None


def _kind_from_os_error(exc: BaseException) -> ErrorKind | None:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout):
        return ErrorKind.TIMEOUT
    if isinstance(exc, socket.gaierror | ConnectionError):
        return ErrorKind.NETWORK
    return _kind_from_code(getattr(exc, "errno", None)) or _kind_from_code(
        getattr(exc, "code", None)
    )


def _kind_from_code(code: object) -> ErrorKind | None:
    """An errno number, or a Node-style code string such as ``ECONNREFUSED``."""
    if isinstance(code, int) and not isinstance(code, bool):
        timeout, network = code in _TIMEOUT_ERRNOS, code in _NETWORK_ERRNOS
    elif isinstance(code, str):
        timeout, network = code.upper() in _TIMEOUT_CODES, code.upper() in _NETWORK_CODES
    else:
        return None
    if timeout:
        return ErrorKind.TIMEOUT
    return ErrorKind.NETWORK if network else None


def _kind_from_type_name(exc: BaseException) -> ErrorKind | None:
    """Recognise common third-party types (httpx, requests, aiohttp, pydantic) by name."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    joined = " ".join(names)
    if "Timeout" in joined:
        return ErrorKind.TIMEOUT
    if any(
        n in names for n in ("ConnectError", "ConnectionError", "NetworkError", "ProtocolError")
    ):
        return ErrorKind.NETWORK
    if any(n.endswith("ValidationError") for n in names):
        return ErrorKind.VALIDATION
    return None


def _kind_from_message(message: str) -> ErrorKind | None:
    for pattern, kind in _MESSAGE_RULES:
        if pattern.search(message):
            return kind
    return None


class ErrorClassifier:
    """Turns exceptions into ``ClassifiedError``s."""

    def __init__(
        self, rules: ClassifierRules | None = None, redactor: Redactor | None = None
    ) -> None:
        self.rules = rules or ClassifierRules()
        self.redactor = redactor or Redactor()

    @property
    def retryable_kinds(self) -> frozenset[ErrorKind]:
        return self.rules.retryable if self.rules.retryable is not None else DEFAULT_RETRYABLE

    def with_rules(self, more: ClassifierRules | None) -> ErrorClassifier:
        if more is None:
            return self
        return ErrorClassifier(self.rules.merged(more), self.redactor)

    def kind_of(self, exc: BaseException | None) -> ErrorKind:
        if exc is None:
            return ErrorKind.UNKNOWN
        for rule in self.rules.rules:
            kind = rule(exc)
            if kind is not None:
                return ErrorKind(kind)
        for exc_type, kind in self.rules.kinds:
            if isinstance(exc, exc_type):
                return kind
        return self._builtin_kind(exc)

    def _builtin_kind(self, exc: BaseException) -> ErrorKind:
        typed = getattr(exc, "error_kind", None)
        if typed is not None:
            return _kind_or_unknown(typed)
        if not isinstance(exc, Exception):
            # SystemExit, KeyboardInterrupt, GeneratorExit, CancelledError raised by a task:
            # what they carry is no status, errno or message (SystemExit(110) is no timeout).
            return ErrorKind.UNKNOWN
        status = status_of(exc)
        if status is not None:
            return kind_for_status(status)
        return (
            _kind_from_os_error(exc)
            or _kind_from_type_name(exc)
            or _kind_from_message(str(exc))
            or ErrorKind.UNKNOWN
        )

    def classify(self, exc: BaseException | None) -> ClassifiedError:
        kind = self.kind_of(exc)
        explicit = getattr(exc, "retryable", None)
        retryable = explicit if isinstance(explicit, bool) else kind in self.retryable_kinds
        if exc is None:
            return ClassifiedError(
                kind=kind, retryable=retryable, message="no error information", type="None"
            )
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        details = getattr(exc, "details", None)
        return ClassifiedError(
            kind=kind,
            retryable=retryable,
            message=self.redactor.text(str(exc) or type(exc).__name__),
            type=_qualified_type(exc),
            stack=self.redactor(stack),
            status=status_of(exc),
            retry_after=retry_after_of(exc),
            details=self._clean_details(details),
        )

    def _clean_details(self, details: Any) -> dict[str, Any]:
        if not isinstance(details, Mapping):
            return {}
        cleaned = self.redactor.deep({str(key): value for key, value in details.items()})
        assert isinstance(cleaned, dict)
        return cleaned


def _qualified_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"
