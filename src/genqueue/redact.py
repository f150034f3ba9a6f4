"""Redaction of secrets from text that genqueue stores, logs or shows.

Error messages and stack traces come from third-party code (HTTP clients put headers and
URLs in them). Everything captured from a failure passes through a ``Redactor`` before it
reaches a job's history, a dead letter entry, an event or a log line. It removes the
exact secret values it was told about (the provider API keys a worker holds) and
anything shaped like a credential.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "[REDACTED]"

_PATTERNS = [
    # Authorization headers and bearer tokens, in any quoting.
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\b)[^'\",\s}]{6,}"),
    # key=value / "key": "value" pairs whose key names a credential.
    re.compile(
        r"(?i)((?:api[_-]?key|apikey|api[_-]?token|access[_-]?token|secret|password|token)"
        r"['\"]?\s*[:=]\s*['\"]?)[^'\"&,\s}]{6,}"
    ),
    # Provider-style keys: sk-..., pk_live_..., ghp_...
    re.compile(r"\b(sk|pk|rk)[-_](?:live[-_]|test[-_])?[A-Za-z0-9_-]{12,}"),
]


class Redactor:
    """Masks registered secret values and credential-shaped substrings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str | None) -> None:
        """Mask this exact value (and its base64 and URL-encoded forms) from now on."""
        if not secret or len(secret) < 4:
            return
        self._secrets.add(secret)
        self._secrets.add(base64.b64encode(secret.encode()).decode().rstrip("="))
        self._secrets.add(quote(secret, safe=""))

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text

    def text(self, text: str) -> str:
        """Like calling the redactor, for a value known not to be None."""
        return self(text) or ""

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (dicts, lists, strings)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.deep(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(item) for item in value]
        return value


def _mask_match(match: re.Match[str]) -> str:
    if match.lastindex:
        return match.group(1) + MASK
    return MASK
