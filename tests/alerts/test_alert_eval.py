"""Alert evaluation against the database: pending, reminders, acks, silences, evidence, concurrent evaluators."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.rules import acknowledge, add_rule, add_silence, validate_rule
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.settings import Settings, load_settings
from monitor.signals.buckets import record_batch
from schemas.alerts import Alert, Notification
from schemas.news import News
from tests.signal_helpers import scored_news

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
AAPL = "TICKER:AAPL"
ADMIN, ANALYST = Principal("test-admin", "admin", "cli"), Principal("test-analyst", "analyst", "dashboard")


def _settings() -> Settings:
    return load_settings(signal_bucket_s=60, notify_urls=[], notify_secrets_file=None)


def _store(engine: Any, rows: list[News], settings: Settings) -> None:
    with db.session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        record_batch(session, rows, settings)


def _rule(engine: Any, **overrides: Any) -> None:
    data = {"name": "aapl", "entity": "AAPL", "metric": "mean_sentiment", "comparator": "<", "threshold": -0.5,
            "recovery_threshold": -0.1, "window_s": 300, "pending_s": 60, "repeat_interval_s": 600,
            "channels": ["hook"]}
    with db.session_scope(engine) as session:
        add_rule(session, validate_rule({**data, **overrides}), by=ADMIN)


def _notes(engine: Any) -> list[tuple[str, int]]:
    with Session(engine) as session:
        return [(n.kind, n.alert_id) for n in session.exec(select(Notification).order_by(col(Notification.id)))]


def test_pending_reminder_ack_silence_and_resolve(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    settings, engine = _settings(), db.make_engine(sqlite_url)
    _rule(engine)
    _store(engine, [scored_news(f"n{i}", T0 + timedelta(seconds=i), f"bad news {i}", -0.9, tickers=["AAPL"])
                    for i in range(3)] + [scored_news("good", T0, "fine news", 0.6, tickers=["MSFT"])], settings)
    evaluator = AlertEvaluator(settings, engine)
    as_of, now = T0 + timedelta(seconds=10), datetime(2030, 1, 1, tzinfo=UTC)

    def at(seconds: int, touched: set[str] | None = None) -> int:
        return evaluator.evaluate({AAPL} if touched is None else touched, as_of, now + timedelta(seconds=seconds))

    assert at(0) == 0 and at(30) == 0  # pending: the condition has held for less than 60 s
    assert at(61) == 1  # firing
    assert at(62, touched=set()) == 0  # an open state is evaluated without new news about it; nothing new
    assert at(661) == 1  # reminder after the 600 s repeat interval
    with Session(engine) as session:
        alert = session.exec(select(Alert)).one()
    assert alert.status == "firing" and alert.value == -0.9
    assert [h["id"] for h in alert.evidence["headlines"]] == ["n0", "n1", "n2"]
    assert alert.evidence["window"]["count"] == 3 and alert.evidence["threshold"] == -0.5
    with db.session_scope(engine) as session:
        acknowledge(session, alert.id or 0, by=ANALYST)
    assert at(1300) == 0  # acknowledged: no more reminders
    with db.session_scope(engine) as session:
        add_silence(session, now + timedelta(days=1), entity="AAPL", reason="known", by=ANALYST)
    # Good news moves the window's mean back past the recovery threshold: resolved, but silenced.
    _store(engine, [scored_news(f"p{i}", T0 + timedelta(seconds=20 + i), f"good news {i}", 0.9, tickers=["AAPL"])
                    for i in range(10)], settings)
    assert at(1400) == 0
    with Session(engine) as session:
        alert = session.exec(select(Alert)).one()
    assert alert.status == "resolved" and alert.resolved_value is not None and alert.resolved_value > -0.1
    assert _notes(engine) == [("firing", alert.id), ("reminder", alert.id)]
    engine.dispose()


def test_concurrent_evaluators_announce_once(db_url: str) -> None:
    settings, engine = _settings(), db.make_engine(db_url)
    _rule(engine, pending_s=0, repeat_interval_s=0)
    _store(engine, [scored_news(f"n{i}", T0 + timedelta(seconds=i), f"bad news {i}", -0.9, tickers=["AAPL"])
                    for i in range(3)], settings)
    barrier, errors = threading.Barrier(4), []

    def evaluate() -> None:
        other = db.make_engine(db_url)
        try:
            barrier.wait()
            AlertEvaluator(settings, other).evaluate({AAPL}, T0 + timedelta(seconds=10), datetime.now(UTC))
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
    with Session(engine) as session:
        assert len(session.exec(select(Alert)).all()) == 1
    assert [kind for kind, _ in _notes(engine)] == ["firing"]
    engine.dispose()
