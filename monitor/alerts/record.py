"""What an alert decision writes: the alert and its evidence, and the outbox rows of its notifications.

Written in the evaluator's transaction, with the state and the clock, so a crash never loses or duplicates one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from monitor.alerts.explain import explain
from monitor.alerts.metrics import WindowMetrics, top_headlines
from monitor.alerts.notify import DEFAULT_CHANNEL, default_channel_configured
from monitor.alerts.state import Event
from monitor.core.settings import Settings
from schemas.alerts import Alert, AlertRule, AlertSilence, Notification
from schemas.signals import entity_matches

log = logging.getLogger(__name__)


def silenced(silences: Iterable[AlertSilence], rule: AlertRule, entity: str, now: datetime) -> bool:
    return any(s.until > now and s.rule_id in (None, rule.id) and (s.entity is None or entity_matches(s.entity, entity))
               for s in silences)


def render(kind: Event, rule: AlertRule, alert: Alert, metrics: WindowMetrics) -> tuple[str, str]:
    """Title and body of a notification. Plain text: every Apprise service can show it."""
    value = metrics.value(rule.metric, rule.min_stories)
    shown = "no data" if value is None else f"{value:.3f}"
    title = (f"[{kind.upper()}] {rule.severity}: {rule.name} on {alert.entity}: {rule.metric} {shown} "
             f"({rule.comparator} {rule.threshold:g})")
    lines = [
        f"rule {rule.name} (alert #{alert.id}, since {alert.started_at.isoformat()})",
        explain(rule.metric, metrics, rule.window_s),
        f"window {metrics.start.isoformat()} .. {metrics.end.isoformat()}",
    ]
    headlines = alert.evidence.get("headlines", []) if kind != "resolved" else []
    lines += [f"  {h['score']:+.2f}  {h['headline']}  [{h['id']}]" for h in headlines]
    return title[:500], "\n".join(lines)


def open_alert(session: Session, rule: AlertRule, entity: str, metrics: WindowMetrics, at: datetime) -> Alert:
    value = metrics.value(rule.metric, rule.min_stories)
    evidence: dict[str, Any] = {
        "metric": rule.metric, "value": value, "comparator": rule.comparator, "threshold": rule.threshold,
        "recovery_threshold": rule.recovery_threshold, "window_s": rule.window_s, "min_stories": rule.min_stories,
        "window": metrics.to_json(), "explanation": explain(rule.metric, metrics, rule.window_s),
        "headlines": top_headlines(session, entity, rule.metric, rule.comparator, metrics.start, metrics.end),
    }
    alert = Alert(rule_id=rule.id or 0, rule_name=rule.name, entity=entity, metric=rule.metric,
                  severity=rule.severity, started_at=at, value=value, threshold=rule.threshold, evidence=evidence)
    session.add(alert)
    session.flush()
    log.info("alert #%s FIRING: rule %s on %s: %s", alert.id, rule.name, entity, evidence["explanation"])
    return alert


def close_alert(session: Session, alert: Alert, rule: AlertRule, metrics: WindowMetrics, at: datetime) -> None:
    value = metrics.value(rule.metric, rule.min_stories)
    alert.status, alert.resolved_at, alert.resolved_value = "resolved", at, value
    alert.evidence = {**alert.evidence, "resolved_window": metrics.to_json(),
                      "resolved_explanation": explain(rule.metric, metrics, rule.window_s)}
    session.add(alert)
    session.flush()
    log.info("alert #%s RESOLVED: rule %s on %s: %s = %s", alert.id, rule.name, alert.entity, rule.metric, value)


def enqueue(session: Session, settings: Settings, event: Event, rule: AlertRule, alert: Alert,
            metrics: WindowMetrics, at: datetime, wall_now: datetime, silences: Iterable[AlertSilence]) -> int:
    """Queue the event's notifications; none for a silenced rule, an acknowledged alert's reminder, or an
    event older than ``FINPULSE_ALERT_NOTIFY_MAX_AGE_S`` (a backlog being caught up)."""
    max_age = settings.alert_notify_max_age_s
    if max_age > 0 and wall_now - at > timedelta(seconds=max_age):
        return 0
    if (event == "reminder" and alert.acked_at) or silenced(silences, rule, alert.entity, wall_now):
        return 0
    channels = list(rule.channels)
    if DEFAULT_CHANNEL not in channels and default_channel_configured(settings):
        channels.append(DEFAULT_CHANNEL)
    title, body = render(event, rule, alert, metrics)
    for channel in channels:
        session.add(Notification(alert_id=alert.id or 0, channel=channel, kind=event, title=title, body=body))
    return len(channels)
