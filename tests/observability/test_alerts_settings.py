"""Alert settings: defaults, the [alerts] section of the settings file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from genqueue.errors import ConfigError
from genqueue.observability.alerts import (
    RULE_TYPES,
    AlertSettings,
    DlqSize,
    OldestQueued,
    RetryRate,
    parse_duration,
)
from genqueue.observability.notify import NotifySettings


def test_defaults() -> None:
    settings = AlertSettings()
    assert settings.enabled and settings.interval == 30 and settings.repeat_every == 4 * 3600
    assert [r.name for r in settings.rules] == list(RULE_TYPES)
    assert [r.name for r in settings.active_rules] == list(RULE_TYPES)
    size = settings.rule("dlq_size")
    assert (size.threshold, size.severity.value) == (100, "warning")
    rate = settings.rule("retry_rate")
    assert isinstance(rate, RetryRate)
    assert (rate.threshold, rate.window, rate.min_sample) == (0.5, 900, 20)
    assert settings.rule("dlq_write_failure").severity.value == "critical"
    assert settings.rule("breaker_open").severity.value == "critical"
    assert settings.rule("oldest_queued").threshold == 600
    assert settings.rule("retention_unseen").to_dict()["horizon"] == 86400
    assert (settings.digests.window, settings.digests.top) == (300, 10)


def test_the_settings_file_the_notifiers_read(tmp_path: Path) -> None:
    path = tmp_path / "genqueue.toml"
    path.write_text(
        """
[notify]
retry_delays = [1]

[[notify.targets]]
name = "oncall"
type = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[alerts]
interval = "15s"
repeat_every = "1h"
link = "https://grafana.example.com/d/genqueue"

[alerts.digests]
window = "10m"
top = 3

[alerts.rules.dlq_size]
threshold = 500
severity = "critical"
repeat_every = "30m"

[alerts.rules.retry_rate]
window = "1h"
min_sample = 50

[alerts.rules.oldest_queued]
threshold = "2m"

[alerts.rules.retention_unseen]
enabled = false
"""
    )
    settings = AlertSettings.load(path, environ={})
    assert (settings.interval, settings.repeat_every) == (15, 3600)
    assert settings.link == "https://grafana.example.com/d/genqueue"
    assert (settings.digests.window, settings.digests.top) == (600, 3)
    size = settings.rule("dlq_size")
    assert isinstance(size, DlqSize)
    assert (size.threshold, size.severity.value, settings.repeat_for(size)) == (
        500,
        "critical",
        1800,
    )
    rate = settings.rule("retry_rate")
    assert isinstance(rate, RetryRate)
    assert (rate.window, rate.min_sample, rate.threshold) == (3600, 50, 0.5)
    assert settings.repeat_for(rate) == 3600
    assert isinstance(settings.rule("oldest_queued"), OldestQueued)
    assert settings.rule("oldest_queued").threshold == 120
    assert "retention_unseen" not in [r.name for r in settings.active_rules]
    # The notifiers read the same file.
    assert [t.name for t in NotifySettings.load(path, environ={}).targets] == ["oncall"]


def test_no_file_means_defaults_and_the_environment_turns_alerts_off() -> None:
    assert AlertSettings.load(None, environ={}) == AlertSettings()
    for value in ("off", "0", "false", "NO"):
        assert not AlertSettings.load(None, environ={"GENQUEUE_ALERTS": value}).enabled
    assert AlertSettings.load(None, environ={"GENQUEUE_ALERTS": "on"}).enabled


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[alerts]\ninterval = 'soon'", "alerts.interval: must be seconds or a duration"),
        ("[alerts]\nenabled = 'yes'", "alerts.enabled: must be true or false"),
        ("[alerts]\nbogus = 1", "alerts.bogus: unknown setting"),
        ("[alerts.rules.dlq_sise]\nthreshold = 1", "alerts.rules.dlq_sise: unknown rule"),
        ("[alerts.rules.dlq_size]\nthreshold = -1", "alerts.rules.dlq_size.threshold: must be"),
        ("[alerts.rules.dlq_size]\nthreshold = 'many'", "alerts.rules.dlq_size.threshold"),
        ("[alerts.rules.dlq_size]\nwindow = '5m'", "alerts.rules.dlq_size.window: unknown"),
        ("[alerts.rules.dlq_size]\nseverity = 'loud'", "alerts.rules.dlq_size.severity: use"),
        ("[alerts.rules.retry_rate]\nthreshold = 50", "retry_rate.threshold: must be a ratio"),
        ("[alerts.rules.retry_rate]\nmin_sample = 0", "retry_rate.min_sample: must be at least"),
        ("[alerts.rules.retry_rate]\nwindow = '10s'", "retry_rate.window: must be at least 60"),
        ("[alerts.rules.retry_rate]\nwindow = '30d'", "retry_rate.window: must be at most"),
        ("[alerts.digests]\ntop = 0", "alerts.digests.top: must be a whole number"),
        ("[alerts.digests]\nwindow = '10s'", "alerts.digests.window: must be at least 60"),
        ("[alerts]\nrules = 3", "alerts.rules: must be a table"),
        ("alerts = 3", "[alerts] must be a table"),
        ("[alerts]\nlink = 'ftp://x'", "alerts.link: must be an http(s) URL"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "genqueue.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        AlertSettings.load(path, environ={})
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_durations() -> None:
    assert [parse_duration(v, "x") for v in (90, 1.5, "90s", "15m", "4h", "1d")] == [
        90,
        1.5,
        90,
        900,
        4 * 3600,
        86400,
    ]
    for bad in ("-1s", "4 hours", True, -3, float("nan")):
        with pytest.raises(ConfigError):
            parse_duration(bad, "x")
