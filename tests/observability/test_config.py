"""Notification settings: TOML file, environment, errors that name the field, no secrets shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from genqueue.errors import ConfigError
from genqueue.observability.notify import NotifySettings, NotifyTarget, Severity, TargetType
from tests.observability.receiver import SECRET

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecrettokenXXXX"

GOOD = f"""
[worker]
concurrency = 4   # other sections are someone else's

[notify]
retry_delays = [2, 10]
timeout = 5

[[notify.targets]]
name = "ops"
type = "webhook"
url = "https://ops.example.com/genqueue"
secret_env = "OPS_SECRET"
min_severity = "warning"

[[notify.targets]]
name = "oncall"
type = "slack"
url = "{SLACK_URL}"
min_severity = "critical"
enabled = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "genqueue.toml"
    path.write_text(text)
    return path


def test_a_settings_file_with_two_targets(tmp_path: Path) -> None:
    settings = NotifySettings.load(write(tmp_path, GOOD), environ={"OPS_SECRET": SECRET})
    ops, oncall = settings.targets
    assert ops.name == "ops" and ops.type is TargetType.WEBHOOK and ops.secret == SECRET
    assert ops.min_severity is Severity.WARNING and ops.enabled
    assert oncall.type is TargetType.SLACK and oncall.secret is None
    assert oncall.min_severity is Severity.CRITICAL and not oncall.enabled
    assert settings.enabled_targets == (ops,)
    assert settings.schedule.delays == (2.0, 10.0) and settings.schedule.timeout == 5.0


def test_the_file_comes_from_genqueue_settings_and_the_environment_adds_targets(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, GOOD)
    env = {
        "GENQUEUE_SETTINGS": str(path),
        "OPS_SECRET": SECRET,
        "GENQUEUE_WEBHOOK_URL": "https://hooks.example.com/x",
        "GENQUEUE_WEBHOOK_SECRET": SECRET,
        "GENQUEUE_SLACK_WEBHOOK_URL": SLACK_URL,
    }
    settings = NotifySettings.load(environ=env)
    assert [t.name for t in settings.targets] == ["ops", "oncall", "webhook", "slack"]
    assert NotifySettings.load(environ={}).targets == ()


def test_environment_only() -> None:
    settings = NotifySettings.from_env({"GENQUEUE_SLACK_WEBHOOK_URL": SLACK_URL})
    [slack] = settings.targets
    assert slack.name == "slack" and slack.url == SLACK_URL and slack.min_severity is Severity.INFO


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GENQUEUE_WEBHOOK_URL": "https://h.example.com"}, "GENQUEUE_WEBHOOK_SECRET: a webhook"),
        ({"GENQUEUE_WEBHOOK_SECRET": SECRET}, "GENQUEUE_WEBHOOK_URL is not"),
        (
            {"GENQUEUE_WEBHOOK_URL": "https://h.example.com", "GENQUEUE_WEBHOOK_SECRET": "short"},
            "GENQUEUE_WEBHOOK_SECRET: ",
        ),
        (
            {"GENQUEUE_SLACK_WEBHOOK_URL": "hooks.slack.com/services/x"},
            "GENQUEUE_SLACK_WEBHOOK_URL: must be",
        ),
    ],
)
def test_environment_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        NotifySettings.from_env(env)
    for value in env.values():
        if value != "https://h.example.com":
            assert value not in str(info.value)


TARGET = 'name = "t"\ntype = "webhook"\nurl = "https://h.example.com/x"\n'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "t"\ntype = "webhook"\n', r"notify.targets\[0\].url: is required"),
        (
            'type = "slack"\nurl = "https://h.example.com"\n',
            r"notify.targets\[0\].name: is required",
        ),
        ('name = "t"\ntype = "email"\nurl = "https://h.example.com"\n', r"\[0\].type: use one of"),
        (TARGET, r"notify.targets\[0\].secret: a webhook target needs"),
        (TARGET + 'secret = "whsec_%%%"\n', r"\[0\].secret: not base64"),
        (TARGET + 'secret = "whsec_QUJD"\n', r"\[0\].secret: must decode to 24-64"),
        (TARGET + f'secret = "{SECRET}"\nmin_severity = "loud"\n', r"\[0\].min_severity: use one"),
        (TARGET + f'secret = "{SECRET}"\nmin_severty = "info"\n', r"\[0\].min_severty: unknown"),
        (TARGET + f'secret = "{SECRET}"\nenabled = "yes"\n', r"\[0\].enabled: must be true"),
        (TARGET + 'secret_env = "NOPE_UNSET"\n', r"\[0\].secret_env: environment variable NOPE"),
        (
            'name = "t"\ntype = "slack"\nurl = "https://h.example.com"\nsecret = "x"\n',
            r"\[0\].secret: only webhook targets are signed",
        ),
        ('name = "bad name"\ntype = "slack"\nurl = "https://h.example.com"\n', r"\[0\].name: 1-64"),
        (
            'name = "t"\ntype = "slack"\nurl = "ftp://h.example.com"\n',
            r"\[0\].url: must be an http",
        ),
        (
            'name = "t"\ntype = "slack"\nurl = "https://h.example.com:99999/"\n',
            r"\[0\].url: is not",
        ),
    ],
)
def test_invalid_targets_name_the_field(tmp_path: Path, table: str, message: str) -> None:
    path = write(tmp_path, "[[notify.targets]]\n" + table)
    with pytest.raises(ConfigError, match=message) as info:
        NotifySettings.load(path, environ={})
    assert str(path) in str(info.value)
    assert SECRET.removeprefix("whsec_") not in str(info.value)
    assert "%%%" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[notify]\ntargets = 3\n", "notify.targets: must be a list"),
        ("[notify]\ntimeout = 0\n", "notify.timeout: must be"),
        ("[notify]\nretry_delays = [1, -2]\n", "notify.retry_delays: each delay"),
        ("[notify]\nretry_delays = 5\n", "notify.retry_delays: must be a list"),
        ("[notify]\nretrys = 5\n", "notify.retrys: unknown setting"),
        ("notify = 3\n", r"\[notify\] must be a table"),
        ("[notify\n", "is not valid TOML"),
    ],
)
def test_invalid_notify_tables(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NotifySettings.load(write(tmp_path, text), environ={})


def test_duplicate_names_and_missing_files(tmp_path: Path) -> None:
    slack = f'[[notify.targets]]\nname = "slack"\ntype = "slack"\nurl = "{SLACK_URL}"\n'
    with pytest.raises(ConfigError, match="two targets are named 'slack'"):
        NotifySettings.load(
            write(tmp_path, slack), environ={"GENQUEUE_SLACK_WEBHOOK_URL": SLACK_URL}
        )
    with pytest.raises(ConfigError, match="does not exist"):
        NotifySettings.load(tmp_path / "missing.toml", environ={})


def test_url_env_and_value_or_env_not_both(tmp_path: Path) -> None:
    table = '[[notify.targets]]\nname = "s"\ntype = "slack"\nurl_env = "MY_SLACK"\n'
    settings = NotifySettings.load(write(tmp_path, table), environ={"MY_SLACK": SLACK_URL})
    assert settings.targets[0].url == SLACK_URL
    both = table + f'url = "{SLACK_URL}"\n'
    with pytest.raises(ConfigError, match=r"\[0\].url: give url or url_env, not both"):
        NotifySettings.load(write(tmp_path, both), environ={"MY_SLACK": SLACK_URL})


def test_secrets_are_not_in_reprs_and_urls_are_shown_redacted() -> None:
    hook = NotifyTarget("ops", "webhook", "https://u:pw@ops.example.com/in?token=abcdefgh", SECRET)  # type: ignore[arg-type]
    slack = NotifyTarget("oncall", "slack", SLACK_URL)  # type: ignore[arg-type]
    for text in (repr(hook), repr(slack), repr(NotifySettings((hook, slack)))):
        assert "secrettoken" not in text and "abcdefgh" not in text
        assert SECRET not in text and "pw@" not in text
    assert slack.shown_url == "https://hooks.slack.com/services/[REDACTED]"
    assert hook.shown_url == "https://ops.example.com/in?[REDACTED]"
