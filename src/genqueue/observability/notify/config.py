"""Where notifications go: targets from a TOML settings file and from the environment.

The settings file (``--settings FILE`` or ``GENQUEUE_SETTINGS``) may hold other sections;
this module reads ``[notify]``::

    [notify]
    retry_delays = [1, 5, 25]      # seconds between attempts (optional)
    timeout = 15                   # seconds per request (optional)

    [[notify.targets]]
    name = "ops"
    type = "webhook"               # or "slack"
    url = "https://ops.example.com/genqueue"
    secret_env = "OPS_WEBHOOK_SECRET"   # or secret = "whsec_..."
    min_severity = "warning"       # info (default), warning, critical
    enabled = true

The environment adds a target named ``webhook`` (``GENQUEUE_WEBHOOK_URL`` and
``GENQUEUE_WEBHOOK_SECRET``) and one named ``slack`` (``GENQUEUE_SLACK_WEBHOOK_URL``).
Bad settings raise ``ConfigError`` naming the field, never showing a URL or secret:
webhook secrets and Slack URLs (which embed a token) are secrets. ``url_env`` reads a URL
from the environment the same way ``secret_env`` does.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genqueue.errors import ConfigError
from genqueue.observability.notify.delivery import RetrySchedule
from genqueue.observability.notify.model import Severity
from genqueue.observability.notify.webhook import parse_secret
from genqueue.redact import MASK

SETTINGS_ENV = "GENQUEUE_SETTINGS"
WEBHOOK_URL_ENV = "GENQUEUE_WEBHOOK_URL"
WEBHOOK_SECRET_ENV = "GENQUEUE_WEBHOOK_SECRET"  # noqa: S105 - a variable name
SLACK_URL_ENV = "GENQUEUE_SLACK_WEBHOOK_URL"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TARGET_KEYS = frozenset(
    {"name", "type", "url", "url_env", "secret", "secret_env", "min_severity", "enabled"}
)
_NOTIFY_KEYS = frozenset({"targets", "retry_delays", "timeout"})


class FieldError(ConfigError):
    """A setting is invalid; ``field`` names it, the message never shows its value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def at(self, prefix: str) -> FieldError:
        """The same error, located (``notify.targets[1]`` + ``.url``)."""
        return FieldError(f"{prefix}.{self.field}", self.problem)


class TargetType(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


@dataclass(frozen=True)
class NotifyTarget:
    name: str
    type: TargetType
    url: str = field(repr=False)
    #: The ``whsec_`` signing secret (webhook targets only).
    secret: str | None = field(default=None, repr=False)
    min_severity: Severity = Severity.INFO
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise FieldError("name", "1-64 letters, digits, '_', '.' or '-'")
        object.__setattr__(self, "type", _choice(TargetType, self.type, "type"))
        object.__setattr__(
            self, "min_severity", _choice(Severity, self.min_severity, "min_severity")
        )
        if not isinstance(self.enabled, bool):
            raise FieldError("enabled", "must be true or false")
        _check_url(self.url)
        if self.type is TargetType.WEBHOOK:
            if not self.secret:
                raise FieldError("secret", "a webhook target needs a whsec_ signing secret")
            try:
                parse_secret(self.secret)
            except ConfigError as exc:
                raise FieldError("secret", exc.message.removeprefix("secret: ")) from None
        elif self.secret is not None:
            raise FieldError("secret", "only webhook targets are signed; remove it")

    @property
    def shown_url(self) -> str:
        """The URL as it may be printed (Slack's token and any query masked)."""
        return redacted_url(self.url, slack=self.type is TargetType.SLACK)


@dataclass(frozen=True)
class NotifySettings:
    targets: tuple[NotifyTarget, ...] = ()
    schedule: RetrySchedule = field(default_factory=RetrySchedule)

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        for name in names:
            if names.count(name) > 1:
                raise FieldError("notify.targets", f"two targets are named {name!r}")

    @property
    def enabled_targets(self) -> tuple[NotifyTarget, ...]:
        return tuple(t for t in self.targets if t.enabled)

    @classmethod
    def from_mapping(
        cls, notify: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> NotifySettings:
        """From the ``[notify]`` table of a settings file."""
        env = os.environ if environ is None else environ
        _no_unknown(notify, _NOTIFY_KEYS, "notify")
        raw_targets = notify.get("targets", [])
        if not isinstance(raw_targets, list):
            raise FieldError("notify.targets", "must be a list of tables ([[notify.targets]])")
        targets = []
        for index, raw in enumerate(raw_targets):
            where = f"notify.targets[{index}]"
            try:
                targets.append(_target_from_table(raw, env))
            except FieldError as exc:
                raise exc.at(where) from None
        return cls(tuple(targets), _schedule(notify))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifySettings:
        env = os.environ if environ is None else environ
        return cls(_env_targets(env))

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> NotifySettings:
        """The settings file (``path``, else ``GENQUEUE_SETTINGS``, else none) plus the
        environment's targets."""
        env = os.environ if environ is None else environ
        file = settings_path(path, env)
        base = cls()
        if file is not None:
            notify = read_settings_file(file).get("notify", {})
            if not isinstance(notify, Mapping):
                raise ConfigError(f"{file}: [notify] must be a table")
            try:
                base = cls.from_mapping(notify, env)
            except FieldError as exc:
                raise ConfigError(f"{file}: {exc.message}") from None
        extra = _env_targets(env)
        return cls(base.targets + extra, base.schedule)


def settings_path(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The settings file to read: explicit, else ``GENQUEUE_SETTINGS``, else None."""
    env = os.environ if environ is None else environ
    chosen = explicit or env.get(SETTINGS_ENV) or None
    return Path(chosen) if chosen else None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML settings file; a missing or malformed file is a ``ConfigError``."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"settings file {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {file} is not valid TOML: {exc}") from None


def redacted_url(url: str, *, slack: bool = False) -> str:
    """``scheme://host[:port]/path`` without user info; the query masked; for Slack the
    path after ``/services/`` (the token) masked too."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    path = parts.path
    if slack:
        path = "/services/" + MASK if path.startswith("/services/") else "/" + MASK
    query = "?" + MASK if parts.query else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{path}{query}"


def _target_from_table(raw: Any, env: Mapping[str, str]) -> NotifyTarget:
    if not isinstance(raw, Mapping):
        raise FieldError("(target)", "must be a table")
    _no_unknown(raw, _TARGET_KEYS, None)
    for key in ("name", "type"):
        if key not in raw:
            raise FieldError(key, "is required")
    url = _value_or_env(raw, "url", env)
    if url is None:
        raise FieldError("url", "is required (or url_env naming an environment variable)")
    return NotifyTarget(
        name=raw["name"],
        type=raw["type"],
        url=url,
        secret=_value_or_env(raw, "secret", env),
        min_severity=raw.get("min_severity", Severity.INFO),
        enabled=raw.get("enabled", True),
    )


def _value_or_env(raw: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    value, var = raw.get(key), raw.get(f"{key}_env")
    if value is not None and var is not None:
        raise FieldError(key, f"give {key} or {key}_env, not both")
    if var is not None:
        if not isinstance(var, str) or not var:
            raise FieldError(f"{key}_env", "must name an environment variable")
        if not env.get(var):
            raise FieldError(f"{key}_env", f"environment variable {var} is not set")
        return env[var]
    if value is not None and not isinstance(value, str):
        raise FieldError(key, "must be a string")
    return value


def _env_targets(env: Mapping[str, str]) -> tuple[NotifyTarget, ...]:
    targets = []
    url, secret = env.get(WEBHOOK_URL_ENV), env.get(WEBHOOK_SECRET_ENV)
    if url or secret:
        if not url:
            raise ConfigError(f"{WEBHOOK_SECRET_ENV} is set but {WEBHOOK_URL_ENV} is not")
        if not secret:
            raise ConfigError(f"{WEBHOOK_SECRET_ENV}: a webhook needs a whsec_ signing secret")
        names = {"url": WEBHOOK_URL_ENV, "secret": WEBHOOK_SECRET_ENV}
        targets.append(_env_target(names, "webhook", url, secret))
    slack = env.get(SLACK_URL_ENV)
    if slack:
        targets.append(_env_target({"url": SLACK_URL_ENV}, "slack", slack, None))
    return tuple(targets)


def _env_target(names: dict[str, str], kind: str, url: str, secret: str | None) -> NotifyTarget:
    try:
        return NotifyTarget(kind, TargetType(kind), url, secret)
    except FieldError as exc:
        raise ConfigError(f"{names.get(exc.field, exc.field)}: {exc.problem}") from None


def _schedule(notify: Mapping[str, Any]) -> RetrySchedule:
    delays = notify.get("retry_delays", [1, 5, 25])
    timeout = notify.get("timeout", 15)
    if not isinstance(delays, list) or not all(_number(d) for d in delays) or len(delays) > 10:
        raise FieldError("notify.retry_delays", "must be a list of at most 10 numbers of seconds")
    if not _number(timeout) or timeout <= 0:
        raise FieldError("notify.timeout", "must be a number of seconds > 0")
    if any(d < 0 or d > 3600 for d in delays):
        raise FieldError("notify.retry_delays", "each delay must be 0-3600 seconds")
    return RetrySchedule(
        delays=tuple(float(d) for d in delays),
        max_delay=max([60.0, *(float(d) for d in delays)]),
        timeout=float(timeout),
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _no_unknown(table: Mapping[str, Any], known: frozenset[str], where: str | None) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise FieldError(name, f"unknown setting (known: {', '.join(sorted(known))})")


def _choice(cls: Any, value: object, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise FieldError(name, f"use one of {', '.join(m.value for m in cls)}") from None


def _check_url(url: object) -> None:
    if not isinstance(url, str) or not url:
        raise FieldError("url", "is required")
    if any(c.isspace() for c in url):
        raise FieldError("url", "must not contain spaces")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise FieldError("url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldError("url", "must be an http:// or https:// URL with a host")
