"""Drift: JS divergence on constructed distributions, reports, the drift alert and its notification (real HTTP)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.alerts.notify import Notifier
from monitor.core import db
from monitor.core.settings import load_settings
from monitor.lifecycle import registry
from monitor.lifecycle.drift import DRIFT_RULE, check_drift
from monitor.lifecycle.drift_math import distribution, js_divergence
from schemas.alerts import Alert, Notification
from schemas.registry import ModelVersion
from schemas.retraining import DriftReport
from schemas.types import utcnow
from tests.alert_helpers import WebhookReceiver
from tests.signal_helpers import scored_news

UNIFORM_LABELS = {"negative": 1 / 3, "neutral": 1 / 3, "positive": 1 / 3}
CONFIDENT = [0.0] * 9 + [1.0]  # every prediction in the top confidence bin


def test_js_divergence_of_constructed_distributions() -> None:
    assert js_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert js_divergence([1, 0], [0, 1]) == 1.0  # disjoint: the base-2 maximum
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): 0.5 log2(4/3) + 0.5 (0.5 log2(2/3) + 0.5 log2 2)
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(expected) == pytest.approx(0.3112781)
    assert js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(expected)  # symmetric
    assert js_divergence([10, 0], [3, 3]) == pytest.approx(expected)  # counts are normalized
    with pytest.raises(ValueError, match="bins"):
        js_divergence([1, 0], [1, 0, 0])
    dist = distribution(["negative", "negative", "positive", "neutral"], [0.34, 0.55, 0.999, 1.0])
    assert dist["n"] == 4 and dist["labels"] == {"negative": 0.5, "neutral": 0.25, "positive": 0.25}
    assert dist["confidence_bins"] == [0, 0, 0, 0.25, 0, 0.25, 0, 0, 0, 0.5]


def add_news(engine: Engine, version: str, count: int, score: float, confidence: float) -> None:
    with db.session_scope(engine) as session:
        for _ in range(count):
            news_id = f"n-{uuid.uuid4().hex[:12]}"
            row = scored_news(news_id, utcnow(), f"Headline {news_id}", score, confidence=confidence)
            row.model_version = version
            session.add(row)


def test_drift_alert_fires_once_notifies_and_resolves(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(db_url)
    reference = {"source": "gold", "n": 90, "labels": UNIFORM_LABELS, "confidence_bins": CONFIDENT}
    registry.register(engine, version="v1", path="/models/v1", base_model="x", train_args={},
                      metrics={"reference_distribution": reference})
    settings = load_settings(database_url=db_url, drift_min_news=20, drift_threshold=0.1, notify_urls=[],
                             notify_backoff_s=0.05)
    add_news(engine, "v1", 10, score=-0.9, confidence=0.95)
    few = check_drift(settings, engine)
    assert few is not None and not few.drifted and few.js is None and "only 10 stories" in (few.note or "")

    add_news(engine, "v1", 50, score=-0.9, confidence=0.95)  # 60 stories, all negative, all confident
    add_news(engine, "v0", 30, score=0.9, confidence=0.5)  # scored by another version: not compared
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("FINPULSE_NOTIFY_DRIFT", receiver.url("drift"))
        report = check_drift(settings, engine, trigger="schedule")
        assert report is not None and report.drifted and report.news_count == 60
        # labels (1, 0, 0) vs uniform: m = (2/3, 1/6, 1/6); 0.5 (log2 1.5 + 1/3)
        assert report.label_js == pytest.approx(0.5 * (math.log2(1.5) + 1 / 3))
        assert report.confidence_js == 0.0 and report.js == report.label_js and report.reference_source == "gold"
        again = check_drift(settings, engine, trigger="schedule")  # still drifting: the same alert, no message
        assert again is not None and again.drifted and again.alert_id == report.alert_id
        with Session(engine) as session:
            alert = session.get_one(Alert, report.alert_id)
            assert (alert.rule_name, alert.status, alert.metric) == (DRIFT_RULE, "firing", "drift_js")
            assert alert.value == pytest.approx(report.js) and alert.evidence["current"]["n"] == 60
            queued = session.exec(select(Notification)).all()
        assert [(n.channel, n.kind, n.status) for n in queued] == [("drift", "firing", "pending")]
        assert Notifier(engine, settings).drain_once() == 1
        (path, payload), = receiver.posts()
        assert path == "/drift" and "model drift on v1" in payload["title"] and "negative 100%" in payload["message"]

        calm = check_drift(settings.model_copy(update={"drift_threshold": 0.9}), engine)
        assert calm is not None and not calm.drifted and calm.alert_id == report.alert_id
        with Session(engine) as session:
            assert session.get_one(Alert, report.alert_id).status == "resolved"
            kinds = [n.kind for n in session.exec(select(Notification).order_by(col(Notification.id)))]
            reports = session.exec(select(DriftReport).order_by(col(DriftReport.id))).all()
        assert kinds == ["firing", "resolved"]
        assert [r.drifted for r in reports] == [False, True, True, False] and reports[1].trigger == "schedule"
    engine.dispose()


def test_reference_is_computed_once_for_a_champion_without_one(sqlite_url: str, tiny_model_dir: Path) -> None:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    registry.register(engine, version="tiny-0", path=str(tiny_model_dir), base_model="x", train_args={}, metrics={})
    add_news(engine, "tiny-0", 25, score=0.0, confidence=0.6)
    settings = load_settings(database_url=sqlite_url, drift_min_news=20, device="cpu", precision="fp32",
                             notify_urls=[])
    report = check_drift(settings, engine)
    assert report is not None and report.js is not None and report.reference_source == "sample"
    with Session(engine) as session:
        stored = session.exec(select(ModelVersion)).one().metrics["reference_distribution"]
    assert stored["source"] == "sample" and stored["n"] > 50 and sum(stored["labels"].values()) == pytest.approx(1)
    assert report.reference == stored
    engine.dispose()


def test_models_page_lists_runs_and_drift_reports(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from monitor.core.settings import get_settings
    from monitor.lifecycle.scheduler import run_drift

    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    reference = {"source": "gold", "n": 90, "labels": UNIFORM_LABELS, "confidence_bins": CONFIDENT}
    registry.register(engine, version="v1", path="/models/v1", base_model="x", train_args={},
                      metrics={"reference_distribution": reference})
    add_news(engine, "v1", 30, score=-0.9, confidence=0.95)
    report = run_drift(load_settings(database_url=sqlite_url, drift_min_news=20, notify_urls=[]), slot=None)
    assert report is not None and report.drifted
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FINPULSE_DASHBOARD_AUTH_DISABLED", "true")
    get_settings.cache_clear()
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py"),
                               default_timeout=60).run()
        at.switch_page("views/models.py").run()
    finally:
        get_settings.cache_clear()
    assert not at.exception, [e.message for e in at.exception]
    runs, reports = at.dataframe[1].value, at.dataframe[2].value
    assert list(runs["job"]) == ["drift"] and list(runs["status"]) == ["done"]
    assert list(reports["drifted"]) == [True] and reports["label_js"].item() == pytest.approx(report.label_js)
    engine.dispose()


def test_drift_starts_a_retraining_when_configured(sqlite_url: str) -> None:
    from monitor.lifecycle.scheduler import run_drift
    from schemas.retraining import JobRun

    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    reference = {"source": "gold", "n": 90, "labels": UNIFORM_LABELS, "confidence_bins": CONFIDENT}
    registry.register(engine, version="v1", path="/models/v1", base_model="x", train_args={},
                      metrics={"reference_distribution": reference})
    add_news(engine, "v1", 30, score=-0.9, confidence=0.95)
    settings = load_settings(database_url=sqlite_url, drift_min_news=20, notify_urls=[], drift_retrain=True)
    assert run_drift(settings, slot="2026-03-01T01:15:00Z", trigger="schedule").drifted
    assert run_drift(settings, slot="2026-03-01T01:15:00Z", trigger="schedule") is None  # slot already done
    with Session(engine) as session:
        runs = session.exec(select(JobRun).order_by(col(JobRun.id))).all()
    assert [(r.job, r.trigger, r.status) for r in runs] == [("drift", "schedule", "done"),
                                                             ("retrain", "drift", "skipped")]
    assert "0 new labels" in (runs[1].reason or "")
    engine.dispose()
