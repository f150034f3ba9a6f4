"""Alerts: rules evaluated by one elected worker, notified once, repeated, resolved.

This package owns the alert rules (``rules.py``), their settings (``settings.py``, the
``[alerts]`` section of the settings file), the alert lifecycle stored in the backend
(``state.py``), which dead letters somebody opened (``seen.py``) and the evaluator loop
that workers run (``evaluator.py``). It does not deliver anything itself: notifications
go through ``genqueue.observability.notify``. It must not import ``genqueue.providers``:
provider breakers come in through a ``BreakerSource`` callable.

    from genqueue.observability.alerts import AlertEvaluator, AlertSettings
    from genqueue.providers.breaker import list_breakers

    evaluator = AlertEvaluator(app, AlertSettings.load(), breakers=list_breakers)
    worker = Worker(app, alerts=evaluator.run)       # every worker; one evaluates
"""

from genqueue.observability.alerts.evaluator import (
    LEADER_KEY,
    AlertEvaluator,
    Dispatcher,
    StepReport,
)
from genqueue.observability.alerts.rules import (
    RULE_TYPES,
    AlertContext,
    BreakerOpen,
    BreakerSource,
    Check,
    DlqGrowth,
    DlqSize,
    DlqWriteFailure,
    OldestQueued,
    RetentionUnseen,
    RetryRate,
    Rule,
    Unavailable,
    Unit,
    default_rules,
)
from genqueue.observability.alerts.seen import SEEN_KEY, mark_seen, seen_since
from genqueue.observability.alerts.settings import (
    ALERTS_ENV,
    AlertSettings,
    DigestSettings,
    parse_duration,
)
from genqueue.observability.alerts.state import (
    MAX_RECENT,
    RECENT,
    STATE_KEY,
    AlertList,
    AlertRecord,
    AlertsState,
    Round,
    Which,
    advance,
    list_alerts,
    read_alerts,
    read_state,
)

__all__ = [
    "ALERTS_ENV",
    "LEADER_KEY",
    "MAX_RECENT",
    "RECENT",
    "RULE_TYPES",
    "SEEN_KEY",
    "STATE_KEY",
    "AlertContext",
    "AlertEvaluator",
    "AlertList",
    "AlertRecord",
    "AlertSettings",
    "AlertsState",
    "BreakerOpen",
    "BreakerSource",
    "Check",
    "DigestSettings",
    "Dispatcher",
    "DlqGrowth",
    "DlqSize",
    "DlqWriteFailure",
    "OldestQueued",
    "RetentionUnseen",
    "RetryRate",
    "Round",
    "Rule",
    "StepReport",
    "Unavailable",
    "Unit",
    "Which",
    "advance",
    "default_rules",
    "list_alerts",
    "mark_seen",
    "parse_duration",
    "read_alerts",
    "read_state",
    "seen_since",
]
