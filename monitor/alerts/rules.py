"""Managing alert rules, silences and acknowledgements: the operations behind ``finpulse alerts`` and the dashboard,
and why an alert fired or resolved, in the words both show.

Every function takes the caller's session (the caller commits) and raises :class:`ConfigError` with one line
for anything a user can get wrong. Every write takes the acting :class:`~monitor.core.accounts.Principal` as
``by``: it checks the role first (:func:`~monitor.core.accounts.require`, :class:`PermissionDenied` otherwise),
records ``by.name`` (never a typed name) and adds the audit row in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete
from sqlmodel import Session, col, select

from monitor.core import audit
from monitor.core.accounts import Principal, require
from monitor.core.errors import ConfigError
from schemas.alerts import Alert, AlertRule, AlertRuleIn, AlertSilence, AlertState, Notification, describe_rule_error
from schemas.signals import parse_entity_ref
from schemas.types import utcnow

log = logging.getLogger(__name__)

RULE_FIELDS = tuple(AlertRuleIn.model_fields)
# Changing what a rule looks at makes its current states meaningless: they are closed and start over.
_RESET_FIELDS = ("entity", "metric", "comparator", "window_s")


def validate_rule(data: Mapping[str, Any]) -> AlertRuleIn:
    try:
        return AlertRuleIn.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(describe_rule_error(error)) from None


def get_rule(session: Session, name_or_id: str | int) -> AlertRule:
    query = select(AlertRule)
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        rule = session.exec(query.where(col(AlertRule.id) == int(name_or_id))).first()
    else:
        rule = session.exec(query.where(col(AlertRule.name) == str(name_or_id))).first()
    if rule is None:
        raise ConfigError(f"no alert rule named {name_or_id!r}; `finpulse alerts list` shows the rules")
    return rule


def list_rules(session: Session) -> list[AlertRule]:
    return list(session.exec(select(AlertRule).order_by(col(AlertRule.name))).all())


def _fields(rule: AlertRule) -> dict[str, Any]:
    return {"id": rule.id, **{field: getattr(rule, field) for field in RULE_FIELDS}}


def _target(rule: AlertRule) -> str:
    return f"rule {rule.id} ({rule.name})"


def add_rule(session: Session, rule_in: AlertRuleIn, *, by: Principal) -> AlertRule:
    require(by, "edit_rules")
    if session.exec(select(AlertRule).where(col(AlertRule.name) == rule_in.name)).first() is not None:
        raise ConfigError(f"invalid alert rule: name: a rule named {rule_in.name!r} exists; "
                          "choose another name or use `finpulse alerts update`")
    rule = AlertRule(**rule_in.model_dump())
    session.add(rule)
    session.flush()
    audit.record(session, by, "rule.create", _target(rule), None, _fields(rule))
    log.info("alert rule %s added (id %s) by %s", rule.name, rule.id, by.name)
    return rule


def _close_open(session: Session, rule: AlertRule, reason: str) -> None:
    """Close the rule's open alerts (without notifying) and forget its states."""
    now = utcnow()
    for alert in session.exec(select(Alert).where(col(Alert.rule_id) == rule.id, col(Alert.status) == "firing")):
        alert.status, alert.resolved_at = "resolved", now
        alert.evidence = {**alert.evidence, "closed": reason}
        session.add(alert)
    session.execute(delete(AlertState).where(col(AlertState.rule_id) == rule.id))


def update_rule(session: Session, name_or_id: str | int, changes: Mapping[str, Any], *,
                by: Principal) -> AlertRule:
    """Apply ``changes`` (any AlertRuleIn fields); the whole merged rule is validated again."""
    require(by, "edit_rules")
    rule = get_rule(session, name_or_id)
    unknown = sorted(set(changes) - set(RULE_FIELDS))
    if unknown:
        raise ConfigError(f"invalid alert rule: {unknown[0]}: not a rule field (fields: {', '.join(RULE_FIELDS)})")
    current = {field: getattr(rule, field) for field in RULE_FIELDS}
    merged = validate_rule({**current, **changes}).model_dump()
    if merged["name"] != rule.name and session.exec(
        select(AlertRule).where(col(AlertRule.name) == merged["name"])
    ).first() is not None:
        raise ConfigError(f"invalid alert rule: name: a rule named {merged['name']!r} exists")
    if any(merged[f] != current[f] for f in _RESET_FIELDS) or (current["enabled"] and not merged["enabled"]):
        _close_open(session, rule, "rule disabled" if not merged["enabled"] else "rule changed")
    before = _fields(rule)
    for field, value in merged.items():
        setattr(rule, field, value)
    rule.updated_at = utcnow()
    session.add(rule)
    session.flush()
    audit.record(session, by, "rule.update", _target(rule), before, _fields(rule))
    log.info("alert rule %s updated by %s", rule.name, by.name)
    return rule


def delete_rule(session: Session, name_or_id: str | int, *, by: Principal) -> AlertRule:
    """Delete a rule with its states and silences; its past alerts stay (they carry the rule's name)."""
    require(by, "edit_rules")
    rule = get_rule(session, name_or_id)
    before = _fields(rule)
    _close_open(session, rule, "rule deleted")
    session.execute(delete(AlertSilence).where(col(AlertSilence.rule_id) == rule.id))
    session.delete(rule)
    session.flush()
    audit.record(session, by, "rule.delete", f"rule {before['id']} ({before['name']})", before, None)
    log.info("alert rule %s deleted by %s", rule.name, by.name)
    return rule


def add_silence(session: Session, until: datetime, rule: str | None = None, entity: str | None = None,
                reason: str | None = None, *, by: Principal) -> AlertSilence:
    require(by, "silence")
    if rule is None and entity is None:
        raise ConfigError("a silence needs --rule, --entity or both; it would otherwise mute everything")
    if until <= utcnow():
        raise ConfigError(f"silence end {until.isoformat()} is in the past; give a future time or a duration")
    rule_id = get_rule(session, rule).id if rule is not None else None
    try:
        key = parse_entity_ref(entity) if entity is not None else None
    except ValueError as error:
        raise ConfigError(f"invalid silence entity: {error}") from None
    silence = AlertSilence(rule_id=rule_id, entity=key, until=until, reason=reason, created_by=by.name)
    session.add(silence)
    session.flush()
    audit.record(session, by, "silence.create", f"silence {silence.id}", None,
                 {"id": silence.id, "rule_id": rule_id, "entity": key, "until": until, "reason": reason})
    return silence


def acknowledge(session: Session, alert_id: int, *, by: Principal) -> Alert:
    """Mark an alert seen: reminders stop; the resolve notification is still sent."""
    require(by, "acknowledge")
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise ConfigError(f"no alert #{alert_id}; `finpulse alerts history` lists recent alerts")
    before = {"acked_at": alert.acked_at, "acked_by": alert.acked_by}
    alert.acked_at, alert.acked_by = utcnow(), by.name
    session.add(alert)
    session.flush()
    audit.record(session, by, "alert.acknowledge", f"alert {alert.id} ({alert.rule_name} on {alert.entity})",
                 before, {"acked_at": alert.acked_at, "acked_by": alert.acked_by})
    return alert


def recent_alerts(session: Session, limit: int = 20) -> list[tuple[Alert, list[Notification]]]:
    alerts = list(session.exec(select(Alert).order_by(col(Alert.started_at).desc(), col(Alert.id).desc())
                               .limit(limit)).all())
    ids = [alert.id for alert in alerts]
    notes: dict[int, list[Notification]] = {}
    for note in session.exec(select(Notification).where(col(Notification.alert_id).in_(ids))
                             .order_by(col(Notification.id))).all():
        notes.setdefault(note.alert_id, []).append(note)
    return [(alert, notes.get(alert.id or 0, [])) for alert in alerts]


def why_fired(alert: Alert) -> str:
    """The evaluator's sentence ("12 stories in 15m, 0.4 expected; p < 1e-6"); alerts written before it had
    one get the bare condition."""
    explanation = alert.evidence.get("explanation")
    if isinstance(explanation, str) and explanation:
        return explanation
    comparator = alert.evidence.get("comparator") or "vs threshold"
    value = "n/a" if alert.value is None else f"{alert.value:+.2f}"
    return f"{alert.metric} {value} {comparator} {alert.threshold:+g}"


def why_resolved(alert: Alert) -> str | None:
    """Why a resolved alert ended: the evaluator's sentence on the last window, the reason it was closed by
    hand (a rule changed, disabled or deleted), or, for older alerts, the value it resolved at."""
    if alert.status != "resolved":
        return None
    explanation = alert.evidence.get("resolved_explanation")
    if isinstance(explanation, str) and explanation:
        return explanation
    closed = alert.evidence.get("closed")
    if closed:
        return f"closed: {closed}"
    if alert.resolved_value is None:
        return f"no data for {alert.metric}"
    return f"{alert.metric} back at {alert.resolved_value:+.2f}"
