"""Every write the dashboard makes, in one importable place (so a test can forge one).

Each takes the browser session's signed-in account (:func:`dashboards.auth.acting`: never a typed name; None with
auth disabled or after the login expired), refuses with :class:`PermissionDenied` when its role may not, and hands
it to the shared write function (``monitor.alerts.rules``, ``monitor.lifecycle.registry``, ``dashboards.labels``),
which checks the role again at the point of writing and records the audit row in the same transaction.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from dashboards import auth, labels, state
from dashboards.formatting import utc
from dashboards.queries.training import QueueItem
from monitor.alerts import rules
from monitor.alerts.durations import parse_duration
from monitor.core.accounts import Action, Principal, require
from monitor.core.db import session_scope
from monitor.lifecycle import registry
from schemas.registry import ModelVersion
from schemas.types import utcnow

log = logging.getLogger(__name__)

SILENCE_SCOPES = ("this rule on this entity", "this rule, every entity", "this entity, every rule")


def by(action: Action) -> Principal:
    """The acting account, when it may do ``action``; PermissionDenied (a readable line) otherwise."""
    return require(auth.acting(), action)


def acknowledge(alert_id: int) -> str:
    principal = by("acknowledge")
    with session_scope(state.engine()) as session:
        rules.acknowledge(session, alert_id, by=principal)
    log.info("dashboard: alert #%s acknowledged by %s", alert_id, principal.name)
    return f"Alert #{alert_id} acknowledged."


def silence(rule_id: int, entity: str, scope: str, duration: str, reason: str | None) -> str:
    """Mute the alert's rule and/or entity (``scope``: one of SILENCE_SCOPES) for ``duration`` (30m, 2h, 1d)."""
    principal = by("silence")
    until = utcnow() + timedelta(seconds=parse_duration(duration, "for"))
    with session_scope(state.engine()) as session:
        made = rules.add_silence(session, until, rule=None if scope == SILENCE_SCOPES[2] else str(rule_id),
                                 entity=None if scope == SILENCE_SCOPES[1] else entity, reason=reason or None,
                                 by=principal)
        message = f"Silence #{made.id} until {utc(made.until)}."
    log.info("dashboard: %s by %s", message, principal.name)
    return message


def save_rule(rule_id: int | None, data: dict[str, Any]) -> str:
    """Validate and store (``data`` as ``validate_rule`` takes it); ConfigError names the field on a refusal."""
    principal = by("edit_rules")
    rule_in = rules.validate_rule(data)
    with session_scope(state.engine()) as session:
        stored = (rules.add_rule(session, rule_in, by=principal) if rule_id is None
                  else rules.update_rule(session, rule_id, rule_in.model_dump(), by=principal))
        message = f"Saved rule {stored.name} (#{stored.id})."
    log.info("dashboard: %s by %s", message, principal.name)
    return message


def delete_rule(rule_id: int, name: str) -> str:
    principal = by("edit_rules")
    with session_scope(state.engine()) as session:
        rules.delete_rule(session, rule_id, by=principal)
    log.info("dashboard: rule %s deleted by %s", name, principal.name)
    return f"Deleted rule {name}."


def label(item: QueueItem, sentiment: str, entities: list[dict[str, Any]]) -> int:
    return labels.save_label(state.engine(), item, sentiment, entities, by=by("label"))


def promote(version: str) -> ModelVersion:
    return registry.promote(state.engine(), version, by=by("promote"), settings=state.settings())


def rollback() -> ModelVersion:
    return registry.rollback(state.engine(), by=by("rollback"), settings=state.settings())


def approve(version: str) -> ModelVersion:
    return registry.approve(state.engine(), version, by=by("approve"), settings=state.settings())
