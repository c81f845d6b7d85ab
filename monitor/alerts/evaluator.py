"""Evaluates the alert rules at every step of event time: after each committed batch, and on a timer while quiet.

* **One evaluator.** Every consumer runs one, but only the holder of the ``alert-evaluator`` database lock
  evaluates; the others report their clocks (:mod:`monitor.alerts.clock`). Each range of steps is committed only
  if ``alert_clock.evaluated_through`` still holds the value read (a fence), so even two evaluators that both
  believe they hold the lock never judge a step twice or disagree about an alert's state.
* **Cheap.** A range of steps (at most ``CHUNK`` of event time per transaction) reads the stories and buckets it
  needs once (:mod:`monitor.alerts.history`); at each step only the (rule, entity) pairs with stories in the
  rule's window, or with a pending or firing state, are judged. It writes only on a transition.
* **Exactly once.** Alerts, their evidence, their notifications' outbox rows, the states and the clock are written
  in ONE transaction, so a crash never loses or duplicates a notification.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select

from monitor.alerts import clock
from monitor.alerts.history import EntityHistory, load_histories
from monitor.alerts.metrics import WindowMetrics
from monitor.alerts.notify import Notifier
from monitor.alerts.record import close_alert, enqueue, open_alert
from monitor.alerts.state import RuleSpec, Snapshot, State, step
from monitor.core.db import session_scope
from monitor.core.db_lock import DbLock, process_owner
from monitor.core.settings import Settings
from schemas.alerts import Alert, AlertRule, AlertSilence, AlertState
from schemas.news import News
from schemas.signals import MARKET_KEY, entity_matches
from schemas.types import utcnow

log = logging.getLogger(__name__)

MAX_RACES = 5
CHUNK = timedelta(hours=6)  # event time judged per transaction while catching up
LOCK_NAME = "alert-evaluator"


class _LostRace(Exception):
    """Another evaluator moved the clock or a state since we read it."""


def rule_spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(rule.comparator, rule.threshold, rule.recovery_threshold, rule.pending_s, rule.repeat_interval_s,
                    no_data_s=rule.no_data_windows * rule.window_s)


@dataclass
class _Pair:
    """One (rule, entity)'s state while a range of steps is judged."""

    row: AlertState | None
    snapshot: Snapshot
    alert_id: int | None
    value: float | None = None
    changed: bool = False


class AlertEvaluator:
    """The sink's alert stage. ``close()`` releases the lock and stops the notifier thread."""

    def __init__(self, settings: Settings, engine: Engine, notifier: Notifier | None = None,
                 member: str | None = None) -> None:
        self.settings, self.engine, self.notifier = settings, engine, notifier
        self.member = member or process_owner()
        self.clock = clock.MemberClock()
        self.lock = DbLock(engine, LOCK_NAME, ttl_s=max(30.0, 6 * settings.alert_eval_interval_s))
        self._last_tick = 0.0

    def on_commit(self, rows: Sequence[News]) -> None:
        """Called after each committed batch: advance this member's clock and evaluate what is due."""
        self.clock.observe(rows)
        if rows:
            self.tick()

    def polled(self, busy: bool) -> None:
        """Called after each poll: one that found nothing, with nothing in hand, means this member has caught up.
        Evaluates on the timer, so a quiet stream still resolves and reminds. A failure (the database is down)
        only delays evaluation: the next tick resumes from the last step committed."""
        self.clock.caught_up = not busy
        if time.monotonic() - self._last_tick < self.settings.alert_eval_interval_s:
            return
        try:
            self.tick()
        except SQLAlchemyError as error:
            log.warning("alert evaluation failed (retried on the next tick): %s", str(error).splitlines()[0])

    def close(self) -> None:
        try:
            self.lock.release()
        except SQLAlchemyError as error:  # the database went away (its restart already dropped the lock)
            log.warning("could not release the alert-evaluator lock: %s", str(error).splitlines()[0])
        finally:
            if self.notifier is not None:
                self.notifier.close()

    def tick(self, now: datetime | None = None) -> int:
        """Evaluate every step the group clock allows, if this member holds the evaluator lock."""
        self._last_tick = time.monotonic()
        now = now or utcnow()
        if not self.lock.try_acquire():
            return 0
        with session_scope(self.engine) as session:
            group = clock.group_clock(session, self.settings, self.member, self.clock.reading(now), now)
        if group is None:
            return 0
        return self.evaluate_until(group - timedelta(seconds=self.settings.alert_lateness_s), now)

    def evaluate_until(self, target: datetime, now: datetime | None = None) -> int:
        """Judge every step up to ``target`` (event time); returns notifications queued."""
        queued = 0
        while True:
            for attempt in range(1, MAX_RACES + 1):
                try:
                    with session_scope(self.engine) as session:
                        done, count = self._chunk(session, target, now or utcnow())
                    break
                except (_LostRace, IntegrityError, OperationalError) as error:
                    # OperationalError: SQLite refuses a write on a snapshot another writer made stale.
                    if attempt == MAX_RACES:
                        raise
                    log.debug("alert evaluation raced another evaluator (%s); retrying", type(error).__name__)
            queued += count
            if done:
                break
        if queued and self.notifier is not None:
            self.notifier.wake()
        return queued

    def _chunk(self, session: Session, target: datetime, now: datetime) -> tuple[bool, int]:
        """Judge the next range of steps (at most CHUNK); (whether target is reached, notifications queued)."""
        read = clock.evaluated_through(session)
        through = read if read is not None else clock.first_through(session, self.settings, target)
        steps = clock.steps_between(through, min(target, through + CHUNK), self.settings.alert_step_s)
        if not steps:
            return True, 0
        queued = self._judge(session, steps, now)
        if not clock.advance(session, read, steps[-1], self.member):
            raise _LostRace("alert_clock")
        return steps[-1] + timedelta(seconds=self.settings.alert_step_s) > target, queued

    def _judge(self, session: Session, steps: list[datetime], now: datetime) -> int:
        rules = {rule.id: rule for rule in session.exec(select(AlertRule).where(col(AlertRule.enabled))).all()
                 if rule.id is not None}
        if not rules:
            return 0
        s = self.settings
        pairs = _load_pairs(session, select(AlertState).where(col(AlertState.rule_id).in_(list(rules)),
                                                              col(AlertState.state).in_(("pending", "firing"))))
        max_window = max(rule.window_s for rule in rules.values())
        histories = load_histories(session, steps[0], steps[-1], max_window, s.signal_bucket_s,
                                   s.signal_baseline_days * 86_400, keys={entity for _, entity in pairs})
        active = _active_pairs(histories, list(rules.values()), steps, s.alert_step_s)
        wanted = sorted({key[1] for due in active.values() for key in due if key not in pairs})
        for offset in range(0, len(wanted), 1000):
            pairs.update({key: pair for key, pair in _load_pairs(session, select(AlertState).where(
                col(AlertState.rule_id).in_(list(rules)), col(AlertState.entity).in_(wanted[offset:offset + 1000])
            )).items() if key not in pairs})
        silences = session.exec(select(AlertSilence).where(col(AlertSilence.until) > now)).all()
        market = histories.get(MARKET_KEY)
        queued = 0
        for index, at in enumerate(steps):
            due = set(active.get(index, ())) | {key for key, pair in pairs.items()
                                                if pair.snapshot.state in ("pending", "firing")}
            for rule_id, entity in sorted(due):
                rule, history = rules[rule_id], histories.get(entity)
                if history is None:
                    history = histories[entity] = EntityHistory(entity, s.signal_bucket_s, 0.0)
                    history.freeze()
                metrics = history.metrics(at.timestamp(), rule.window_s, rule.comparator, market)
                pair = pairs.get((rule_id, entity)) or _Pair(None, Snapshot(), None)
                pairs[(rule_id, entity)] = pair
                queued += self._step(session, rule, entity, pair, metrics, at, now, silences)
        for (rule_id, entity), pair in pairs.items():
            if pair.changed:
                _save(session, rule_id, entity, pair, now)
        return queued

    def _step(self, session: Session, rule: AlertRule, entity: str, pair: _Pair, metrics: WindowMetrics,
              at: datetime, now: datetime, silences: Sequence[AlertSilence]) -> int:
        value = metrics.value(rule.metric, rule.min_stories)
        after, event = step(rule_spec(rule), pair.snapshot, value, at)
        if after == pair.snapshot and event is None:
            return 0
        pair.snapshot, pair.value, pair.changed = after, value, True
        if event is None:
            return 0
        if event == "firing" or pair.alert_id is None:
            alert = open_alert(session, rule, entity, metrics, at)
        else:
            alert = session.get_one(Alert, pair.alert_id)
            if event == "resolved":
                close_alert(session, alert, rule, metrics, at)
        pair.alert_id = None if event == "resolved" else alert.id
        return enqueue(session, self.settings, event, rule, alert, metrics, at, now, silences)


def _load_pairs(session: Session, query: Any) -> dict[tuple[int, str], _Pair]:
    return {(row.rule_id, row.entity): _Pair(row, Snapshot(_state(row), row.since, row.last_notified_at,
                                                            row.no_data_since), row.alert_id, row.last_value)
            for row in session.exec(query).all()}


def _active_pairs(histories: dict[str, EntityHistory], rules: list[AlertRule], steps: list[datetime],
                  step_s: int) -> dict[int, set[tuple[int, str]]]:
    """Per step index, the (rule, entity) pairs with at least one story in the rule's window at that step: a
    story at time t is in the windows of the steps in [t, t + window)."""
    first = steps[0].timestamp()
    active: dict[int, set[tuple[int, str]]] = defaultdict(set)
    for key, history in histories.items():
        matching = [rule for rule in rules if rule.id is not None and entity_matches(rule.entity, key)]
        if not matching or not history.times:
            continue
        for rule in matching:
            pair = (rule.id or 0, key)
            for moment in history.times:
                lo = max(0, -int((first - moment) // step_s))  # ceil((moment - first) / step)
                hi = min(len(steps), -int((first - moment - rule.window_s) // step_s))
                for index in range(lo, hi):
                    active[index].add(pair)
    return active


def _save(session: Session, rule_id: int, entity: str, pair: _Pair, now: datetime) -> None:
    snap = pair.snapshot
    values: dict[str, Any] = {
        "state": snap.state, "since": snap.since, "last_notified_at": snap.last_notified_at,
        "no_data_since": snap.no_data_since, "alert_id": pair.alert_id, "last_value": pair.value,
        "last_evaluated_at": now,
    }
    if pair.row is None:
        session.add(AlertState(rule_id=rule_id, entity=entity, **values))
        session.flush()  # a concurrent insert of the same pair raises IntegrityError -> retried
        return
    result = session.execute(
        update(AlertState)
        .where(col(AlertState.rule_id) == rule_id, col(AlertState.entity) == entity,
               col(AlertState.version) == pair.row.version)
        .values(version=pair.row.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise _LostRace(f"{rule_id}/{entity}")


def _state(state: AlertState) -> State:
    value = state.state
    return value if value in ("normal", "pending", "firing", "resolved") else "normal"  # type: ignore[return-value]
