"""Alerts end to end: real broker, real consumer, a real (hand-weighted) model, a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

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
from tests.alert_helpers import WebhookReceiver, make_keyword_classifier
from tests.stream_helpers import consumer_settings, encode, publish


@pytest.fixture(scope="module")
def keyword_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyword_classifier(tmp_path_factory.mktemp("keyword-model"))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def message(news_id: str, headline: str, ticker: str, published: str) -> tuple[bytes, bytes]:
    return ticker.encode(), encode({"id": news_id, "source": "wire", "published_at": published,
                                    "headline": headline, "tickers": [ticker]})


@pytest.mark.slow
def test_negative_burst_fires_once_and_positive_news_resolves(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, keyword_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("FINPULSE_NOTIFY_HOOK", receiver.url("ok?token=s3cret"))
        monkeypatch.setenv("FINPULSE_NOTIFY_BROKEN", receiver.url("fail"))
        settings = consumer_settings(broker.bootstrap, topics, db_url, keyword_model_dir, signal_bucket_s=60,
                                     notify_max_attempts=3, notify_backoff_s=0.05, notify_urls=[])
        engine = db.make_engine(db_url)
        with db.session_scope(engine) as session:
            for ticker in ("AAPL", "MSFT"):
                add_rule(session, validate_rule({
                    "name": f"{ticker.lower()}-negative", "entity": ticker, "metric": "mean_sentiment",
                    "comparator": "<", "threshold": -0.5, "recovery_threshold": -0.1, "window_s": 120,
                    "repeat_interval_s": 0, "severity": "critical", "channels": ["hook", "broken"],
                }), by=Principal("test-admin", "admin", "cli"))

        base = utcnow().replace(microsecond=0) - timedelta(minutes=30)
        burst = [message(f"neg-{i}", f"Apple shares plunge as probe widens, part {i}", "AAPL",
                         (base + timedelta(seconds=i)).isoformat()) for i in range(12)]
        # Retweets of the first story: counted once, linked to it.
        burst += [message(f"rt-{i}", f"RT @desk{i}: APPLE shares plunge as probe widens, part 0!! https://t.co/{i}",
                          "AAPL", (base + timedelta(seconds=20 + i)).isoformat()) for i in range(2)]
        burst += [message(f"msft-{i}", f"Microsoft holds its annual meeting, item {i}", "MSFT",
                          (base + timedelta(seconds=i)).isoformat()) for i in range(8)]
        publish(broker.bootstrap, topics[0], burst)
        first = NewsConsumer(settings, engine=engine, max_messages=len(burst)).run()
        assert first.inserted == len(burst)
        wait_for(lambda: len(receiver.posts()) >= 1, "the firing notification")

        recovery = [message(f"pos-{i}", f"Apple shares surge after upgrade {i}", "AAPL",
                            (base + timedelta(minutes=10, seconds=i)).isoformat()) for i in range(6)]
        publish(broker.bootstrap, topics[0], recovery)
        second = NewsConsumer(settings, engine=engine, max_messages=len(recovery)).run()
        assert second.inserted == len(recovery)  # scoring went on while the broken channel kept failing
        wait_for(lambda: len(receiver.posts()) >= 2, "the resolved notification")

        def delivered() -> list[Notification]:
            with Session(engine) as session:
                return list(session.exec(select(Notification).order_by(col(Notification.id))).all())

        wait_for(lambda: all(n.status in ("sent", "failed") for n in delivered()), "every delivery to settle")
        wait_for(lambda: not any(t.name == "finpulse-notifier" for t in threading.enumerate()), "notifier to idle")
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
