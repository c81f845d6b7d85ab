"""A firing alert on a stream that then goes quiet: no story arrives, yet the consumer's timer (its clock is the wall
clock once it has caught up) reminds on time and resolves the alert once its window has lacked data long enough.
Real broker, real consumer, the keyword model, a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from monitor.alerts.rules import add_rule, validate_rule
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from schemas.alerts import Alert, Notification
from schemas.types import utcnow
from tests.alert_helpers import ConsumerThread, WebhookReceiver, make_keyword_classifier, news_message
from tests.stream_helpers import consumer_settings, publish

STEP_S = 1
WINDOW_S = 10
MIN_STORIES = 3
NO_DATA_WINDOWS = 1
REPEAT_S = 3
BURST = 5
LATENCY_S = 5.0  # at most this long from an event's time to its webhook post (about 0.5 s expected)


@pytest.fixture(scope="module")
def keyword_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keyword_classifier(tmp_path_factory.mktemp("keyword-model"))


def next_step(moment: datetime) -> datetime:
    """The first evaluation step at or after ``moment``."""
    return datetime.fromtimestamp(math.ceil(moment.timestamp() / STEP_S) * STEP_S, UTC)


def kind(payload: dict[str, Any]) -> str:
    return str(payload["title"]).split("]", 1)[0].lstrip("[").lower()


@pytest.mark.slow
def test_a_quiet_stream_reminds_on_time_and_resolves_after_the_no_data_hold(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, keyword_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db.upgrade(sqlite_url)
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("FINPULSE_NOTIFY_DESK", receiver.url("desk"))
        settings = consumer_settings(broker.bootstrap, topics, sqlite_url, keyword_model_dir, notify_urls=[],
                                     alert_step_s=STEP_S, alert_lateness_s=0, alert_eval_interval_s=0.2)
        engine = db.make_engine(sqlite_url)
        with db.session_scope(engine) as session:
            add_rule(session, validate_rule({
                "name": "aapl-negative", "entity": "AAPL", "metric": "mean_sentiment", "comparator": "<",
                "threshold": -0.5, "window_s": WINDOW_S, "min_stories": MIN_STORIES,
                "no_data_windows": NO_DATA_WINDOWS, "repeat_interval_s": REPEAT_S, "channels": ["desk"],
            }), by=Principal("test-admin", "admin", "cli"))

        with ConsumerThread(NewsConsumer(settings, engine=engine)) as running:
            start = utcnow()
            published = [start + timedelta(milliseconds=20 * i) for i in range(BURST)]
            publish(broker.bootstrap, topics[0], [
                news_message(f"neg-{i}", f"Apple shares plunge as probe widens, part {i}", "AAPL", moment)
                for i, moment in enumerate(published)])
            # Then nothing more is published: only the consumer's timer can remind and resolve.
            running.wait_for(lambda: any(kind(payload) == "resolved" for _, payload in receiver.posts()),
                             "the resolved post", timeout_s=WINDOW_S * (1 + NO_DATA_WINDOWS) + 60)
        summary = running.summary
        posts = receiver.timed_posts()

    with Session(engine) as session:
        [alert] = session.exec(select(Alert)).all()
        notes = [n.kind for n in session.exec(select(Notification).order_by(col(Notification.id))).all()]
    engine.dispose()

    assert (summary.messages, summary.inserted) == (BURST, BURST)  # no news after the burst
    fired, resolved = alert.started_at, alert.resolved_at
    assert resolved is not None and alert.status == "resolved" and alert.resolved_value is None  # for lack of data
    # In event time: fired while the burst filled the window; the window lacks data from the first step at which
    # fewer than MIN_STORIES remain in it, and the alert holds NO_DATA_WINDOWS windows more before resolving.
    assert published[MIN_STORIES - 1] <= fired < published[0] + timedelta(seconds=WINDOW_S)
    no_data_from = next_step(published[-MIN_STORIES] + timedelta(seconds=WINDOW_S))
    assert resolved == no_data_from + timedelta(seconds=NO_DATA_WINDOWS * WINDOW_S)
    # A reminder every REPEAT_S of event time while firing (the no-data hold included), then the resolution.
    reminders_due = [fired + timedelta(seconds=REPEAT_S * k) for k in range(1, 100)
                     if fired + timedelta(seconds=REPEAT_S * k) < resolved]
    assert reminders_due and notes == ["firing"] + ["reminder"] * len(reminders_due) + ["resolved"]

    # On the wall clock: each post arrives once its event time has come (the clock never runs ahead of it), and
    # within LATENCY_S of it, though no story arrived to drive the evaluation.
    assert [kind(payload) for _, _, payload in posts] == notes
    due = [fired, *reminders_due, resolved]
    for (arrived, _, payload), event_time in zip(posts, due, strict=True):
        assert event_time <= arrived < event_time + timedelta(seconds=LATENCY_S), (kind(payload), arrived, event_time)
    first_reminder = posts[1][0]
    assert first_reminder - fired >= timedelta(seconds=REPEAT_S)
    assert "[REMINDER]" in posts[1][2]["title"] and "aapl-negative on TICKER:AAPL" in posts[1][2]["title"]
