"""Evaluates the alert rules after each committed batch: the thin persistence around :mod:`monitor.alerts.state`.

Cheap by construction: per batch it reads the enabled rules, the states of the (rule, entity) pairs the batch
touched plus those already pending or firing, and each pair's window of signal buckets (a few rows). It writes only
on a transition. Alerts, their evidence and the outbox rows of their notifications are written in ONE transaction
with the state, so a crash never loses or duplicates a notification.

Two consumers may evaluate the same pair at once: every state write is conditional on the ``version`` it read, and
a lost race rolls back and re-evaluates against the winner's state (which then has nothing left to announce).

Time: windows are anchored at the stream's watermark (the newest ``published_at`` seen, capped at the wall clock),
so a replayed stream alerts as it would have live; ``pending_s`` and ``repeat_interval_s`` run on the wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from monitor.alerts.metrics import WindowMetrics, top_headlines, window_metrics
from monitor.alerts.notify import DEFAULT_CHANNEL, Notifier, default_channel_configured
from monitor.alerts.state import Event, RuleSpec, Snapshot, State, step
from monitor.core.db import session_scope
from monitor.core.settings import Settings
from monitor.signals.buckets import row_observations
from schemas.alerts import Alert, AlertRule, AlertSilence, AlertState, Notification
from schemas.news import News
from schemas.signals import entity_matches
from schemas.types import utcnow

log = logging.getLogger(__name__)

MAX_RACES = 5


class _LostRace(Exception):
    """Another evaluator changed the state since we read it."""


def rule_spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(rule.comparator, rule.threshold, rule.recovery_threshold, rule.pending_s, rule.repeat_interval_s)


def silenced(silences: Iterable[AlertSilence], rule: AlertRule, entity: str, now: datetime) -> bool:
    return any(s.until > now and s.rule_id in (None, rule.id) and (s.entity is None or entity_matches(s.entity, entity))
               for s in silences)


def render(kind: Event, rule: AlertRule, alert: Alert, metrics: WindowMetrics) -> tuple[str, str]:
    """Title and body of a notification. Plain text: every Apprise service can show it."""
    value = metrics.value(rule.metric)
    shown = "no data" if value is None else f"{value:.3f}"
    title = (f"[{kind.upper()}] {rule.severity}: {rule.name} on {alert.entity}: {rule.metric} {shown} "
             f"({rule.comparator} {rule.threshold:g})")
    lines = [
        f"rule {rule.name} (alert #{alert.id}, since {alert.started_at.isoformat()})",
        f"window {metrics.start.isoformat()} .. {metrics.end.isoformat()}: {metrics.count} stories, "
        f"mean sentiment {_fmt(metrics.mean_sentiment)}, negative share {_fmt(metrics.negative_share)}, "
        f"z-score {_fmt(metrics.zscore)}, volume ratio {_fmt(metrics.volume_ratio)}, EWMA {_fmt(metrics.ewma_score)}",
    ]
    headlines = alert.evidence.get("headlines", []) if kind != "resolved" else []
    lines += [f"  {h['score']:+.2f}  {h['headline']}  [{h['id']}]" for h in headlines]
    return title[:500], "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class AlertEvaluator:
    """The sink's alert stage, run after each batch committed. ``close()`` stops its notifier thread."""

    def __init__(self, settings: Settings, engine: Engine, notifier: Notifier | None = None) -> None:
        self.settings, self.engine, self.notifier = settings, engine, notifier
        self.watermark: datetime | None = None

    def on_commit(self, rows: Sequence[News]) -> None:
        """Evaluate the rules for the entities these newly stored rows touched (at most once per row)."""
        if not rows:
            return
        touched = {obs.key for row in rows if row.duplicate_of is None for obs in row_observations(row)}
        now = utcnow()
        newest = max(row.published_at for row in rows)
        self.watermark = min(now, max(newest, self.watermark or newest))
        self.evaluate(touched, self.watermark, now)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()

    def evaluate(self, touched: set[str], as_of: datetime, now: datetime) -> int:
        """Run the rules for ``touched`` entities and open states; returns notifications queued."""
        for attempt in range(1, MAX_RACES + 1):
            try:
                with session_scope(self.engine) as session:
                    queued = self._evaluate(session, touched, as_of, now)
                break
            except (_LostRace, IntegrityError, OperationalError) as error:
                # OperationalError: SQLite refuses a write on a snapshot another writer made stale.
                if attempt == MAX_RACES:
                    raise
                log.debug("alert evaluation raced another consumer (%s); retrying", type(error).__name__)
        if queued and self.notifier is not None:
            self.notifier.wake()
        return queued

    def _targets(self, session: Session, rules: list[AlertRule], touched: set[str]) -> dict[tuple[int, str],
                                                                                             AlertState | None]:
        ids = [rule.id for rule in rules if rule.id is not None]
        targets: dict[tuple[int, str], AlertState | None] = {}
        for rule in rules:
            for key in touched:
                if rule.id is not None and entity_matches(rule.entity, key):
                    targets[(rule.id, key)] = None
        open_states = session.exec(select(AlertState).where(
            col(AlertState.rule_id).in_(ids), col(AlertState.state).in_(("pending", "firing"))
        )).all()
        for state in open_states:
            targets[(state.rule_id, state.entity)] = state
        wanted = {entity for (_, entity), state in targets.items() if state is None}
        if wanted:
            for state in session.exec(select(AlertState).where(col(AlertState.rule_id).in_(ids),
                                                               col(AlertState.entity).in_(sorted(wanted)))).all():
                if (state.rule_id, state.entity) in targets:
                    targets[(state.rule_id, state.entity)] = state
        return targets

    def _evaluate(self, session: Session, touched: set[str], as_of: datetime, now: datetime) -> int:
        rules = {rule.id: rule for rule in session.exec(select(AlertRule).where(col(AlertRule.enabled))).all()}
        if not rules:
            return 0
        targets = self._targets(session, list(rules.values()), touched)
        silences = session.exec(select(AlertSilence).where(col(AlertSilence.until) > now)).all()
        queued = 0
        for (rule_id, entity), state in sorted(targets.items()):
            rule = rules[rule_id]
            metrics = window_metrics(session, entity, as_of, rule.window_s, self.settings.signal_bucket_s,
                                     rule.comparator)
            before = Snapshot(_state(state), state.since, state.last_notified_at) if state else Snapshot()
            after, event = step(rule_spec(rule), before, metrics.value(rule.metric), now)
            if after == before and event is None:
                continue
            alert_id = state.alert_id if state else None
            if event is not None:
                alert = self._record_event(session, event, rule, entity, alert_id, metrics, now)
                alert_id = None if event == "resolved" else alert.id
                if not (event == "reminder" and alert.acked_at) and not silenced(silences, rule, entity, now):
                    queued += self._enqueue(session, event, rule, alert, metrics)
            self._save_state(session, rule_id, entity, state, after, alert_id, metrics.value(rule.metric), now)
        return queued

    def _record_event(self, session: Session, event: Event, rule: AlertRule, entity: str, alert_id: int | None,
                      metrics: WindowMetrics, now: datetime) -> Alert:
        value = metrics.value(rule.metric)
        if event == "firing" or alert_id is None:
            evidence: dict[str, Any] = {
                "metric": rule.metric, "value": value, "comparator": rule.comparator, "threshold": rule.threshold,
                "recovery_threshold": rule.recovery_threshold, "window_s": rule.window_s, "window": metrics.to_json(),
                "headlines": top_headlines(session, entity, rule.metric, rule.comparator, metrics.start, metrics.end),
            }
            alert = Alert(rule_id=rule.id or 0, rule_name=rule.name, entity=entity, metric=rule.metric,
                          severity=rule.severity, started_at=now, value=value, threshold=rule.threshold,
                          evidence=evidence)
            session.add(alert)
            session.flush()
            log.info("alert #%s FIRING: rule %s on %s: %s = %s", alert.id, rule.name, entity, rule.metric, value)
            return alert
        alert = session.get_one(Alert, alert_id)
        if event == "resolved":
            alert.status, alert.resolved_at, alert.resolved_value = "resolved", now, value
            alert.evidence = {**alert.evidence, "resolved_window": metrics.to_json()}
            log.info("alert #%s RESOLVED: rule %s on %s: %s = %s", alert.id, rule.name, entity, rule.metric, value)
        session.add(alert)
        session.flush()
        return alert

    def _enqueue(self, session: Session, event: Event, rule: AlertRule, alert: Alert, metrics: WindowMetrics) -> int:
        channels = list(rule.channels)
        if DEFAULT_CHANNEL not in channels and default_channel_configured(self.settings):
            channels.append(DEFAULT_CHANNEL)
        title, body = render(event, rule, alert, metrics)
        for channel in channels:
            session.add(Notification(alert_id=alert.id or 0, channel=channel, kind=event, title=title, body=body))
        return len(channels)

    def _save_state(self, session: Session, rule_id: int, entity: str, state: AlertState | None, after: Snapshot,
                    alert_id: int | None, value: float | None, now: datetime) -> None:
        values: dict[str, Any] = {
            "state": after.state, "since": after.since, "last_notified_at": after.last_notified_at,
            "alert_id": alert_id, "last_value": value, "last_evaluated_at": now,
        }
        if state is None:
            session.add(AlertState(rule_id=rule_id, entity=entity, **values))
            session.flush()  # a concurrent insert of the same pair raises IntegrityError -> retried
            return
        result = session.execute(
            update(AlertState)
            .where(col(AlertState.rule_id) == rule_id, col(AlertState.entity) == entity,
                   col(AlertState.version) == state.version)
            .values(version=state.version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _LostRace(f"{rule_id}/{entity}")


def _state(state: AlertState) -> State:
    value = state.state
    return value if value in ("normal", "pending", "firing", "resolved") else "normal"  # type: ignore[return-value]
