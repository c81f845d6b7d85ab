"""Alert evaluation against the database, in event time: pending, reminders, acks, silences, evidence, the no-data
hold, the minimum-story condition, catch-up notifications and concurrent evaluators."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from monitor.alerts.clock import floor_step
from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.rules import acknowledge, add_rule, add_silence, validate_rule
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.settings import Settings, load_settings
from monitor.signals.buckets import record_batch
from schemas.alerts import Alert, AlertClock, Notification
from schemas.news import News
from tests.signal_helpers import scored_news

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
ADMIN, ANALYST = Principal("test-admin", "admin", "cli"), Principal("test-analyst", "analyst", "dashboard")


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{"signal_bucket_s": 60, "alert_step_s": 10, "alert_lateness_s": 0,
                            "alert_notify_max_age_s": 0, "notify_urls": [], "notify_secrets_file": None, **overrides})


def _store(engine: Any, rows: list[News], settings: Settings) -> None:
    with db.session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        record_batch(session, rows, settings)


def _rule(engine: Any, **overrides: Any) -> None:
    data = {"name": "aapl", "entity": "AAPL", "metric": "mean_sentiment", "comparator": "<", "threshold": -0.5,
            "recovery_threshold": -0.1, "window_s": 300, "pending_s": 60, "repeat_interval_s": 600,
            "min_stories": 3, "channels": ["hook"]}
    with db.session_scope(engine) as session:
        add_rule(session, validate_rule({**data, **overrides}), by=ADMIN)


def _bad(prefix: str, start: datetime, count: int, ticker: str = "AAPL") -> list[News]:
    return [scored_news(f"{prefix}{i}", start + timedelta(seconds=i), f"bad news {prefix} {i}", -0.9,
                        tickers=[ticker]) for i in range(count)]


def _notes(engine: Any) -> list[tuple[str, int]]:
    with Session(engine) as session:
        return [(n.kind, n.alert_id) for n in session.exec(select(Notification).order_by(col(Notification.id)))]


def _alerts(engine: Any) -> list[Alert]:
    with Session(engine) as session:
        return list(session.exec(select(Alert).order_by(col(Alert.id))).all())


def test_pending_reminder_ack_silence_and_resolve(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    settings, engine = _settings(), db.make_engine(sqlite_url)
    _rule(engine)
    _store(engine, [*_bad("n", T0, 3), scored_news("good", T0, "fine news", 0.6, tickers=["MSFT"])], settings)
    evaluator = AlertEvaluator(settings, engine)
    wall = datetime(2030, 1, 1, tzinfo=UTC)

    def until(seconds: int) -> int:
        return evaluator.evaluate_until(T0 + timedelta(seconds=seconds), wall)

    assert until(30) == 0  # T0: one story (< min_stories), T0+10: 3 stories, pending for less than 60 s
    assert until(70) == 1  # firing at T0+70, 60 s of event time after the condition first held
    [alert] = _alerts(engine)
    assert alert.status == "firing" and alert.value == -0.9 and alert.started_at == T0 + timedelta(seconds=70)
    assert [h["id"] for h in alert.evidence["headlines"]] == ["n0", "n1", "n2"]
    assert alert.evidence["window"]["count"] == 3 and alert.evidence["threshold"] == -0.5
    assert alert.evidence["explanation"] == "3 stories in 5m averaging -0.90"
    # From T0+300 the window no longer holds n0: no data, but the alert holds for 2 windows (600 s) and reminds.
    assert until(660) == 0 and until(670) == 1
    with db.session_scope(engine) as session:
        acknowledge(session, alert.id or 0, by=ANALYST)
        add_silence(session, wall + timedelta(days=1), entity="AAPL", reason="known", by=ANALYST)
    # Good news moves the window's mean back past the recovery threshold: resolved (silenced: no notification).
    _store(engine, [scored_news(f"p{i}", T0 + timedelta(seconds=800 + i), f"good news {i}", 0.9, tickers=["AAPL"])
                    for i in range(10)], settings)
    assert until(820) == 0
    [alert] = _alerts(engine)
    assert alert.status == "resolved" and alert.resolved_at == T0 + timedelta(seconds=810)
    assert alert.resolved_value is not None and alert.resolved_value > -0.1
    assert _notes(engine) == [("firing", alert.id), ("reminder", alert.id)]
    engine.dispose()


def test_no_data_resolves_after_the_configured_windows_and_min_stories_blocks_firing(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    settings, engine = _settings(), db.make_engine(sqlite_url)
    _rule(engine, pending_s=0, repeat_interval_s=0, no_data_windows=1)
    _rule(engine, name="msft", entity="MSFT", pending_s=0, min_stories=5)
    _store(engine, _bad("a", T0, 3) + _bad("m", T0, 4, ticker="MSFT"), settings)
    evaluator = AlertEvaluator(settings, engine)
    evaluator.evaluate_until(T0 + timedelta(seconds=900), datetime(2030, 1, 1, tzinfo=UTC))
    [alert] = _alerts(engine)  # four bad MSFT stories are fewer than its rule's 5
    assert alert.entity == "TICKER:AAPL" and alert.started_at == T0 + timedelta(seconds=10)
    # No data from T0+300 (n0 left the window at T0+300); one window (300 s) later it resolves.
    assert alert.status == "resolved" and alert.resolved_at == T0 + timedelta(seconds=600)
    assert [kind for kind, _ in _notes(engine)] == ["firing", "resolved"]
    engine.dispose()


def test_a_backlog_is_judged_step_by_step_but_old_alerts_are_not_notified(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    settings, engine = _settings(alert_notify_max_age_s=3600), db.make_engine(sqlite_url)
    _rule(engine, pending_s=0)
    recent = floor_step(datetime.now(UTC) - timedelta(minutes=10), 10)
    old = recent - timedelta(days=5)
    _store(engine, _bad("old", old, 3) + _bad("new", recent, 3), settings)
    AlertEvaluator(settings, engine).evaluate_until(recent + timedelta(minutes=2))
    alerts = _alerts(engine)
    # Two episodes, each at its own event time, though one call judged weeks of steps.
    assert [a.started_at for a in alerts] == [old + timedelta(seconds=10), recent + timedelta(seconds=10)]
    assert [(kind, alert_id) for kind, alert_id in _notes(engine)] == [("firing", alerts[1].id)]
    with Session(engine) as session:
        through = session.get_one(AlertClock, "default").evaluated_through
    assert through is not None and through <= recent + timedelta(minutes=2)
    engine.dispose()


def test_concurrent_evaluators_announce_once(db_url: str) -> None:
    settings, engine = _settings(), db.make_engine(db_url)
    _rule(engine, pending_s=0, repeat_interval_s=0)
    _store(engine, _bad("n", T0, 3), settings)
    barrier, errors = threading.Barrier(4), []

    def evaluate() -> None:
        other = db.make_engine(db_url)
        try:
            barrier.wait()
            AlertEvaluator(settings, other).evaluate_until(T0 + timedelta(seconds=60), datetime(2030, 1, 1, tzinfo=UTC))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            other.dispose()

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_alerts(engine)) == 1
    assert [kind for kind, _ in _notes(engine)] == ["firing"]
    engine.dispose()


def test_only_the_lock_holder_evaluates_and_the_group_clock_waits_for_a_lagging_member(db_url: str) -> None:
    settings, engine = _settings(), db.make_engine(db_url)
    _rule(engine, pending_s=0)
    _store(engine, _bad("n", T0, 3), settings)
    first, second = AlertEvaluator(settings, engine, member="a"), AlertEvaluator(settings, engine, member="b")
    try:
        first.clock.observe(_bad("x", T0 + timedelta(seconds=100), 1))
        second.clock.observe(_bad("y", T0 + timedelta(seconds=100), 1))
        assert first.tick() == 1 and first.lock.held  # judged up to its clock, T0 + 100: fired at T0 + 10
        assert second.tick() == 0 and not second.lock.held  # the lock is taken: b only reports its clock
        with Session(engine) as session:
            through = session.get_one(AlertClock, "default").evaluated_through
        assert through == T0 + timedelta(seconds=100)
        assert len(_alerts(engine)) == 1
    finally:
        first.close()
        second.close()
        engine.dispose()
