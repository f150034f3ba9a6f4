"""Error classification: status codes, errno, types, messages, typed errors and None."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest

from genqueue import ClassifierRules, ErrorClassifier, ErrorKind, TaskError
from genqueue.classify import DEFAULT_RETRYABLE, fingerprint, parse_retry_after


class StatusError(Exception):
    def __init__(self, status: int, attr: str = "status") -> None:
        super().__init__(f"HTTP {status}")
        setattr(self, attr, status)


class Response:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class ResponseError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__("request failed")
        self.response = Response(status, headers)


classifier = ErrorClassifier()


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
        (502, ErrorKind.SERVER),
        (503, ErrorKind.SERVER),
    ],
)
@pytest.mark.parametrize("attr", ["status", "status_code"])
def test_status_codes(status: int, kind: ErrorKind, attr: str) -> None:
    assert classifier.classify(StatusError(status, attr)).kind is kind


def test_status_on_response_and_retry_after_header() -> None:
    result = classifier.classify(ResponseError(429, {"retry-after": "7"}))
    assert result.kind is ErrorKind.RATE_LIMITED and result.retryable
    assert result.retry_after == 7.0 and result.status == 429


def test_typed_task_error() -> None:
    result = classifier.classify(TaskError("slow down", kind="rate_limited", retry_after=3))
    assert (result.kind, result.retry_after, result.retryable) == (ErrorKind.RATE_LIMITED, 3, True)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ErrorKind.NETWORK),
        (ConnectionResetError(errno.ECONNRESET, "reset"), ErrorKind.NETWORK),
        (OSError(errno.EHOSTUNREACH, "No route to host"), ErrorKind.NETWORK),
        (OSError(errno.ETIMEDOUT, "timed out"), ErrorKind.TIMEOUT),
        (socket.gaierror(-2, "Name or service not known"), ErrorKind.NETWORK),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (httpx.ConnectError("boom"), ErrorKind.NETWORK),
        (httpx.ReadTimeout("slow"), ErrorKind.TIMEOUT),
    ],
)
def test_network_and_timeout_errors(exc: BaseException, kind: ErrorKind) -> None:
    result = classifier.classify(exc)
    assert result.kind is kind and result.retryable


def test_node_style_error_codes() -> None:
    exc = RuntimeError("failed")
    exc.code = "ECONNREFUSED"  # type: ignore[attr-defined]
    assert classifier.classify(exc).kind is ErrorKind.NETWORK
    exc.code = "ETIMEDOUT"  # type: ignore[attr-defined]
    assert classifier.classify(exc).kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Request timed out after 30s", ErrorKind.TIMEOUT),
        ("operation timeout", ErrorKind.TIMEOUT),
        ("connect ECONNREFUSED 127.0.0.1:443", ErrorKind.NETWORK),
        ("getaddrinfo ENOTFOUND api.example.com", ErrorKind.NETWORK),
        ("Rate limit exceeded", ErrorKind.RATE_LIMITED),
        ("Insufficient credits", ErrorKind.PAYMENT),
        ("something odd happened", ErrorKind.UNKNOWN),
    ],
)
def test_message_patterns(message: str, kind: ErrorKind) -> None:
    assert classifier.classify(RuntimeError(message)).kind is kind


def test_validation_exceptions_by_type() -> None:
    class ValidationError(ValueError):
        pass

    result = classifier.classify(ValidationError("field x is required"))
    assert result.kind is ErrorKind.VALIDATION and not result.retryable


def test_none_is_unknown_and_not_retried() -> None:
    result = classifier.classify(None)
    assert result.kind is ErrorKind.UNKNOWN and not result.retryable and result.type == "None"


def test_generic_error_is_unknown_with_stack() -> None:
    try:
        raise ValueError("bad thing 42")
    except ValueError as exc:
        result = classifier.classify(exc)
    assert result.kind is ErrorKind.UNKNOWN and not result.retryable
    assert result.type == "ValueError" and "bad thing 42" in (result.stack or "")


def test_default_retryable_set() -> None:
    assert {
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
        ErrorKind.TIMEOUT,
        ErrorKind.NETWORK,
    } <= DEFAULT_RETRYABLE
    for kind in (
        ErrorKind.AUTH,
        ErrorKind.PAYMENT,
        ErrorKind.VALIDATION,
        ErrorKind.REMOTE_FAILED,
        ErrorKind.UNKNOWN,
    ):
        assert kind not in DEFAULT_RETRYABLE


def test_rules_override_kinds_and_retryable_set() -> None:
    class QuotaError(Exception):
        pass

    rules = ClassifierRules.build(kinds={QuotaError: "payment"}, retryable=["payment", "server"])
    custom = classifier.with_rules(rules)
    assert custom.classify(QuotaError("x")).kind is ErrorKind.PAYMENT
    assert custom.classify(QuotaError("x")).retryable
    assert not custom.classify(StatusError(429)).retryable


def test_rule_functions_take_precedence() -> None:
    rules = ClassifierRules.build(rules=[lambda e: ErrorKind.SERVER if "flaky" in str(e) else None])
    assert (
        classifier.with_rules(rules).classify(RuntimeError("flaky thing")).kind is ErrorKind.SERVER
    )


def test_explicit_retryable_flag_wins() -> None:
    assert not classifier.classify(TaskError("no", kind="server", retryable=False)).retryable


def test_fingerprint_groups_equal_failures() -> None:
    a = fingerprint("HTTPError", "job 3f2a9c1e4b5d6f708192a3b4c5d6e7f8 failed after 31 s")
    b = fingerprint("HTTPError", "job 00000000000000000000000000000000 failed after 5 s")
    c = fingerprint("OtherError", "job 00000000000000000000000000000000 failed after 5 s")
    assert a == b != c


def test_fingerprints_of_long_messages_group_the_same_way() -> None:
    """Short messages' fingerprints are cached and long ones are not: both group alike,
    and a message's fingerprint is the same however often it is asked for."""
    tail = " retry" * 300  # past the cached length (both cut at 500 characters alike)
    a = fingerprint("HTTPError", "job 3f2a9c1e4b5d6f708192a3b4c5d6e7f8 failed after 31 s" + tail)
    b = fingerprint("HTTPError", "job 00000000000000000000000000000000 failed after 52 s" + tail)
    short = fingerprint("HTTPError", "job 00000000000000000000000000000000 failed after 5 s")
    assert a == b != short
    assert [fingerprint("HTTPError", "x 1") for _ in range(3)] == [
        fingerprint("HTTPError", "x 2")
    ] * 3


def test_secrets_are_redacted_from_messages_and_stacks() -> None:
    from genqueue.redact import Redactor

    redactor = Redactor(["sk-canary-0123456789"])
    custom = ErrorClassifier(redactor=redactor)
    try:
        raise RuntimeError(
            "401 for key sk-canary-0123456789 with Authorization: Bearer abcdef123456"
        )
    except RuntimeError as exc:
        result = custom.classify(exc)
    for text in (result.message, result.stack or ""):
        assert "sk-canary-0123456789" not in text and "abcdef123456" not in text


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(3) == 3.0
    assert parse_retry_after("nonsense") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
