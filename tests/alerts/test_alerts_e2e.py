"""Alerts end to end: real broker, real consumer, a real (hand-weighted) model, a webhook receiver on 127.0.0.1.

The consumer runs as in production (on a thread, until stopped) and judges rules in event time: stories are
published as they happen, and the rules are evaluated every second of event time as the stream goes by.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from monitor.alerts.rules import add_rule, validate_rule
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from schemas.alerts import Alert, AlertState, Notification
from schemas.news import News
from schemas.signals import EntitySignal
from schemas.types import utcnow
from tests.alert_helpers import ConsumerThread, WebhookReceiver, make_keyword_classifier, news_message
from tests.stream_helpers import consumer_settings, publish

# Judge every second of event time, with no allowance for late stories, and look for due steps 5 times a second.
EVENT_TIME: dict[str, Any] = {"alert_step_s": 1, "alert_lateness_s": 0, "alert_eval_interval_s": 0.2}
WINDOW_S = 10


@pytest.fixture(scope="module")
def keyword_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyword_classifier(tmp_path_factory.mktemp("keyword-model"))


@pytest.mark.slow
def test_negative_burst_fires_once_and_positive_news_resolves(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, keyword_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("FINPULSE_NOTIFY_HOOK", receiver.url("ok?token=s3cret"))
        monkeypatch.setenv("FINPULSE_NOTIFY_BROKEN", receiver.url("fail"))
        settings = consumer_settings(broker.bootstrap, topics, db_url, keyword_model_dir, signal_bucket_s=60,
                                     notify_max_attempts=3, notify_backoff_s=0.05, notify_urls=[], **EVENT_TIME)
        engine = db.make_engine(db_url)
        with db.session_scope(engine) as session:
            for ticker in ("AAPL", "MSFT"):
                # A firing alert holds through a minute without news, so only the good news can resolve it.
                add_rule(session, validate_rule({
                    "name": f"{ticker.lower()}-negative", "entity": ticker, "metric": "mean_sentiment",
                    "comparator": "<", "threshold": -0.5, "recovery_threshold": -0.1, "window_s": WINDOW_S,
                    "no_data_windows": 6, "repeat_interval_s": 0, "severity": "critical",
                    "channels": ["hook", "broken"],
                }), by=Principal("test-admin", "admin", "cli"))

        def delivered() -> list[Notification]:
            with Session(engine) as session:
                return list(session.exec(select(Notification).order_by(col(Notification.id))).all())

        with ConsumerThread(NewsConsumer(settings, engine=engine)) as running:
            start = utcnow()
            burst = [news_message(f"neg-{i}", f"Apple shares plunge as probe widens, part {i}", "AAPL",
                                  start + timedelta(milliseconds=10 * i)) for i in range(12)]
            # Retweets of the first story: counted once, linked to it.
            burst += [news_message(f"rt-{i}",
                                   f"RT @desk{i}: APPLE shares plunge as probe widens, part 0!! https://t.co/{i}",
                                   "AAPL", start + timedelta(milliseconds=150 + 10 * i)) for i in range(2)]
            burst += [news_message(f"msft-{i}", f"Microsoft holds its annual meeting, item {i}", "MSFT",
                                   start + timedelta(milliseconds=10 * i)) for i in range(8)]
            publish(broker.bootstrap, topics[0], burst)
            running.wait_for(lambda: len(receiver.posts()) >= 1, "the firing notification")

            # Good news once the bad news has left the rule's window: the window holds nothing else.
            time.sleep(max(0.0, (start + timedelta(seconds=WINDOW_S + 1) - utcnow()).total_seconds()))
            recovered_at = utcnow()
            recovery = [news_message(f"pos-{i}", f"Apple shares surge after upgrade {i}", "AAPL",
                                     recovered_at + timedelta(milliseconds=10 * i)) for i in range(6)]
            publish(broker.bootstrap, topics[0], recovery)
            running.wait_for(lambda: len(receiver.posts()) >= 2, "the resolved notification")
            running.wait_for(lambda: all(n.status in ("sent", "failed") for n in delivered()),
                             "every delivery to settle")
            running.wait_for(lambda: not any(t.name == "finpulse-notifier" for t in threading.enumerate()),
                             "notifier to idle")
        # Scoring went on while the broken channel kept failing.
        assert running.summary.inserted == len(burst) + len(recovery)
        posts = receiver.posts()
        failed_posts = receiver.failed_posts

    assert len(posts) == 2, posts
    (path1, fired), (_, resolved) = posts
    assert path1.startswith("/ok")
    assert fired["title"].startswith("[FIRING] critical: aapl-negative on TICKER:AAPL")
    assert "plunge" in fired["message"] and fired["type"] == "failure"
    assert resolved["title"].startswith("[RESOLVED]") and resolved["type"] == "success"

    with Session(engine) as session:
        alerts = session.exec(select(Alert)).all()
        states = {s.entity: s.state for s in session.exec(select(AlertState)).all()}
        counts = session.exec(select(EntitySignal.count, EntitySignal.duplicates)
                              .where(EntitySignal.entity == "TICKER:AAPL")).all()
        links = {n.id: n.duplicate_of for n in session.exec(select(News).where(col(News.id).like("rt-%"))).all()}
    notes = delivered()
    engine.dispose()

    assert len(alerts) == 1  # MSFT's neutral news fired nothing
    alert = alerts[0]
    assert (alert.entity, alert.status, alert.rule_name) == ("TICKER:AAPL", "resolved", "aapl-negative")
    # Judged in event time: fired while the burst was in the window, resolved while the good news was.
    assert start < alert.started_at < start + timedelta(seconds=WINDOW_S)
    assert alert.resolved_at is not None
    assert recovered_at < alert.resolved_at < recovered_at + timedelta(seconds=WINDOW_S)
    assert alert.value is not None and alert.value < -0.9 and alert.resolved_value is not None
    assert alert.resolved_value > 0.9
    headlines = alert.evidence["headlines"]
    assert 1 <= len(headlines) <= 5 and all("plunge" in h["headline"] and h["score"] < -0.9 for h in headlines)
    assert all(h["id"].startswith("neg-") for h in headlines)  # duplicates are not evidence twice
    assert states.get("TICKER:MSFT", "normal") == "normal" and states["TICKER:AAPL"] == "resolved"
    assert sum(c for c, _ in counts) == 12 + 6 and sum(d for _, d in counts) == 2
    assert links == {"rt-0": "neg-0", "rt-1": "neg-0"}

    by_channel = {(n.channel, n.kind): n for n in notes}
    assert len(notes) == 4 and set(by_channel) == {(c, k) for c in ("hook", "broken") for k in ("firing", "resolved")}
    for kind in ("firing", "resolved"):
        sent, failed = by_channel[("hook", kind)], by_channel[("broken", kind)]
        assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, None) and sent.sent_at is not None
        assert (failed.status, failed.attempts) == ("failed", 3) and failed.sent_at is None
        assert failed.last_error is not None and "500" in failed.last_error
    assert failed_posts == 6  # 2 notifications x 3 attempts
    assert all("s3cret" not in (n.last_error or "") for n in notes)
