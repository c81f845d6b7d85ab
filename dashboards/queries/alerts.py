"""Reads of alerts, pending states, silences and rules. Plain functions of an Engine, free of Streamlit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.alerts.record import silenced
from monitor.alerts.rules import RULE_FIELDS, list_rules, why_fired, why_resolved
from schemas.alerts import Alert, AlertRule, AlertSilence, AlertState
from schemas.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    rule_id: int
    rule_name: str
    entity: str
    metric: str
    severity: str
    status: str
    started_at: datetime
    resolved_at: datetime | None
    value: float | None
    resolved_value: float | None
    threshold: float
    evidence: dict[str, Any]
    acked_at: datetime | None
    acked_by: str | None
    silenced: bool  # notifications for it are muted right now
    explanation: str  # why it fired, in words
    resolved_explanation: str | None  # why it resolved; None while firing


@dataclass(frozen=True, slots=True)
class PendingView:
    rule_id: int
    rule_name: str
    entity: str
    metric: str
    comparator: str
    threshold: float
    severity: str
    since: datetime | None
    pending_s: int
    min_stories: int
    last_value: float | None
    last_evaluated_at: datetime | None


@dataclass(frozen=True, slots=True)
class SilenceView:
    id: int
    rule_name: str | None
    entity: str | None
    until: datetime
    reason: str | None
    created_by: str


def _active_silences(session: Session) -> list[AlertSilence]:
    return list(session.exec(select(AlertSilence).where(col(AlertSilence.until) > utcnow())).all())


def alerts(engine: Engine, status: str, hours: float, limit: int) -> list[AlertView]:
    """Alerts with ``status`` (firing: all of them; resolved: those resolved in the last ``hours``)."""
    now = utcnow()
    query = select(Alert).where(Alert.status == status)
    if status == "resolved":
        query = query.where(col(Alert.resolved_at) >= now - timedelta(hours=hours))
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(Alert.started_at).desc(), col(Alert.id).desc()).limit(limit)).all()
        rules = {rule.id: rule for rule in list_rules(session)}
        silences = _active_silences(session)
        return [
            AlertView(id=row.id or 0, rule_id=row.rule_id, rule_name=row.rule_name, entity=row.entity,
                      metric=row.metric, severity=row.severity, status=row.status, started_at=row.started_at,
                      resolved_at=row.resolved_at, value=row.value, resolved_value=row.resolved_value,
                      threshold=row.threshold, evidence=dict(row.evidence), acked_at=row.acked_at,
                      acked_by=row.acked_by,
                      silenced=row.rule_id in rules and silenced(silences, rules[row.rule_id], row.entity, now),
                      explanation=why_fired(row), resolved_explanation=why_resolved(row))
            for row in rows
        ]


def pending(engine: Engine, limit: int) -> list[PendingView]:
    """(rule, entity) pairs whose condition holds but has not yet held for the rule's ``pending_s``."""
    with Session(engine) as session:
        rows = session.exec(
            select(AlertState, AlertRule).join(AlertRule, col(AlertRule.id) == col(AlertState.rule_id))
            .where(AlertState.state == "pending").order_by(col(AlertState.since).desc()).limit(limit)
        ).all()
        return [
            PendingView(rule_id=rule.id or 0, rule_name=rule.name, entity=state.entity, metric=rule.metric,
                        comparator=rule.comparator, threshold=rule.threshold, severity=rule.severity,
                        since=state.since, pending_s=rule.pending_s, min_stories=rule.min_stories,
                        last_value=state.last_value,
                        last_evaluated_at=state.last_evaluated_at)
            for state, rule in rows
        ]


def silences(engine: Engine) -> list[SilenceView]:
    with Session(engine) as session:
        names = {rule.id: rule.name for rule in list_rules(session)}
        return [
            SilenceView(id=row.id or 0, rule_name=names.get(row.rule_id) if row.rule_id else None,
                        entity=row.entity, until=row.until, reason=row.reason, created_by=row.created_by)
            for row in sorted(_active_silences(session), key=lambda s: s.until)
        ]


def rules(engine: Engine) -> list[dict[str, Any]]:
    """Every rule as the dict of its ``AlertRuleIn`` fields plus id (what the rule editor starts from)."""
    with Session(engine) as session:
        return [{"id": rule.id, **{field: getattr(rule, field) for field in RULE_FIELDS}}
                for rule in list_rules(session)]
