"""A seeded database for the dashboard tests: scored news (with real signals), model versions, labels, alerts.

Everything goes through the real tables; signals come from the real signal writer (``monitor.signals.buckets``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.alerts.explain import explain
from monitor.alerts.metrics import WindowMetrics
from monitor.core.db import make_engine, session_scope
from monitor.core.settings import Settings
from monitor.signals.buckets import record_batch
from schemas.alerts import Alert, AlertRule, AlertState
from schemas.consumers import ConsumerHeartbeat
from schemas.news import News
from schemas.prediction import SENTIMENT_LABELS
from schemas.registry import LabelledNews, ModelVersion
from schemas.types import utcnow

COMPANIES = [("AAPL", "Apple"), ("TSLA", "Tesla"), ("MSFT", "Microsoft"), ("JPM", "JPMorgan")]
# Every headline carries a number so no two stories are near-duplicates (those would not count in the signals).
TEMPLATES = [
    ("{name} beats estimates as revenue climbs {n}%", 0.7),
    ("{name} shares slip {n}% after analyst downgrade", -0.5),
    ("{name} to hold investor day {n} in Chicago", 0.0),
    ("{name} announces ${n}bn buyback programme", 0.6),
]
RECENT_SCORED = 7  # stories scored in the last five minutes (the Overview's tile)
RECENT_PUBLISHED = 4  # stories published in the last five minutes (one per company, 4 minutes ago)
OTHER_TOPIC = "finpulse.news.dtest"  # a live consumer's topic that the settings do not name
REFUSED_DETAIL = "champion v3 failed its test load: RuntimeError: size mismatch for classifier.weight"
RECONNECT_DETAIL = "NoBrokersAvailable: 127.0.0.1:9092 refused the connection (attempt 3)"
STORY_SPACING_MIN = 4  # each company gets a story every 4 minutes...
STEPS = 90  # ...for six hours
FIRING_STORIES = 4  # stories in the window of the firing alert's evidence


@dataclass(frozen=True)
class Seeded:
    now: datetime
    news_ids: list[str]
    recent_scored: int
    firing: int
    pending: int
    champion: str
    serving: str
    awaiting_labels: int
    labelled_ids: set[str]


def _story(news_id: str, offset: int, published: datetime, ticker: str, name: str, template: str, score: float,
           confidence: float, scored_at: datetime, model_version: str) -> News:
    headline = template.format(name=name, n=offset + 1)
    start = headline.index(name)
    sentiment = "negative" if score < -0.2 else "positive" if score > 0.2 else "neutral"
    # The predicted class gets ``confidence``; the other two share the rest (consistent, if not calibrated).
    rest = (1 - confidence) / 2
    p_neg, p_neu, p_pos = (confidence if label == sentiment else rest for label in SENTIMENT_LABELS)
    score = p_pos - p_neg
    entities: list[dict[str, Any]] = [{"text": name, "type": "ORG", "start": start, "end": start + len(name),
                                       "sentiment": sentiment, "probs": [p_neg, p_neu, p_pos],
                                       "score": score, "confidence": confidence}]
    if "Chicago" in headline:
        loc = headline.index("Chicago")
        entities.append({"text": "Chicago", "type": "LOC", "start": loc, "end": loc + 7, "sentiment": "neutral",
                         "probs": [0.1, 0.8, 0.1], "score": 0.0, "confidence": 0.8})
    return News(
        id=news_id, source="wire", published_at=published, headline=headline, body=f"Full story about {name}.",
        tickers=[ticker], kafka_topic="finpulse.news", kafka_partition=offset % 4, kafka_offset=offset,
        sentiment=sentiment, p_negative=p_neg, p_neutral=p_neu, p_positive=p_pos, score=score,
        confidence=confidence, entities=entities, model_version=model_version, ingested_at=published,
        scored_at=scored_at,
    )


def _metrics(macro_f1: float, accuracy: float) -> dict[str, Any]:
    """Metrics shaped as ``finetune.train`` registers them."""
    return {"validation": {"sentiment": {"macro_f1": macro_f1, "accuracy": accuracy, "ece": 0.05,
                                         "per_class": {"negative": {"f1": macro_f1 - 0.02}}},
                           "ner": {"f1": macro_f1 + 0.1}},
            "best_score": macro_f1, "steps": 400, "device": "cpu",
            "onnx": {"int8_gate": {"passed": macro_f1 > 0.75, "max_drop": 0.005, "drops": {},
                                   "reason": "int8 loses sentiment_macro_f1 0.0120 (more than 0.005)"
                                   if macro_f1 <= 0.75 else "int8 within 0.005 of fp32 on every gated metric"}}}


def _window(end: datetime, count: int, mean: float) -> WindowMetrics:
    return WindowMetrics(start=end - timedelta(minutes=15), end=end, buckets=15, count=count, duplicates=0,
                         mean_sentiment=mean, negative_share=1.0 if mean < 0 else 0.0, baseline_mean=0.12,
                         baseline_sd=0.31)


def _evidence(fired: WindowMetrics, resolved: WindowMetrics | None = None) -> dict[str, Any]:
    """Evidence as ``monitor.alerts.record`` writes it (a mean_sentiment < -0.3 rule over 15 minutes), with the
    real explanation of each window."""
    out: dict[str, Any] = {
        "metric": "mean_sentiment", "value": fired.mean_sentiment, "comparator": "<", "threshold": -0.3,
        "recovery_threshold": None, "window_s": 900, "min_stories": 3, "window": fired.to_json(),
        "explanation": explain("mean_sentiment", fired, 900),
        "headlines": [{"id": "n357", "headline": "Tesla recalls 358k cars over brake fault", "score": -0.9,
                       "source": "wire", "published_at": (fired.end - timedelta(minutes=4)).isoformat()}]}
    if resolved is not None:
        out |= {"resolved_window": resolved.to_json(), "resolved_explanation": explain("mean_sentiment", resolved,
                                                                                        900)}
    return out


def seed(url: str, settings: Settings) -> Seeded:
    """Six hours of news for four companies (Tesla turns negative in the last half hour), plus the rest."""
    now = utcnow()
    engine = make_engine(url)
    rows: list[News] = []
    counter = itertools.count()
    noise = random.Random(7)
    steps = range(STORY_SPACING_MIN * STEPS, 0, -STORY_SPACING_MIN)
    for minutes_ago in steps:
        for index, (ticker, name) in enumerate(COMPANIES):
            offset = next(counter)
            template, score = TEMPLATES[noise.randrange(len(TEMPLATES))]
            if ticker == "TSLA" and minutes_ago <= 30:
                template, score = "{name} recalls {n}k cars over brake fault", -0.9
            score = max(-1.0, min(1.0, score + noise.uniform(-0.25, 0.25)))
            published = now - timedelta(minutes=minutes_ago, seconds=index)
            # Exactly RECENT_SCORED stories (the newest) were scored in the last five minutes; the rest as they
            # were published, over five minutes ago.
            recent = offset >= STEPS * len(COMPANIES) - RECENT_SCORED
            scored = now - timedelta(seconds=30 + offset % 200) if recent else published
            confidence = round(0.4 + noise.random() * 0.59, 3)
            rows.append(_story(f"n{offset:03d}", offset, published, ticker, name, template, score, confidence,
                               scored, "v2"))
    with session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        record_batch(session, rows, settings)
    with session_scope(engine) as session:
        session.add_all([
            ModelVersion(version="v1", path="v1", base_model="all-MiniLM-L6-v2", status="retired",
                         metrics=_metrics(0.71, 0.74), trained_until_label_id=0,
                         gate={"decision": "promote", "reason": "first model"}, created_at=now - timedelta(days=3),
                         promoted_at=now - timedelta(days=3)),
            ModelVersion(version="v2", path="v2", base_model="all-MiniLM-L6-v2", status="champion",
                         metrics=_metrics(0.78, 0.80), parent_version="v1",
                         trained_until_label_id=2, promoted_at=now - timedelta(days=1),
                         gate={"decision": "promote", "gold_macro_f1": 0.78, "previous": 0.71},
                         created_at=now - timedelta(days=1)),
            ModelVersion(version="v3", path="v3", base_model="all-MiniLM-L6-v2", status="candidate",
                         metrics=_metrics(0.75, 0.79), parent_version="v2",
                         trained_until_label_id=3, created_at=now - timedelta(hours=2),
                         gate={"decision": "reject", "reason": "gold macro-F1 fell 0.03 > tolerance 0.01"}),
        ])
        labelled = ["n000", "n001", "n002"]
        for news_id in labelled:
            session.add(LabelledNews(news_id=news_id, text=f"text of {news_id}", sentiment="neutral",
                                     entities=[], labelled_by="seed"))
        rule = AlertRule(name="tsla-negative", entity="TICKER:TSLA", metric="mean_sentiment", comparator="<",
                         threshold=-0.3, window_s=900, pending_s=0, repeat_interval_s=3600, severity="critical",
                         channels=["ops"])
        spike = AlertRule(name="volume-spike", entity="TICKER:*", metric="volume_surprise", comparator=">",
                          threshold=6.0, window_s=900, pending_s=600, repeat_interval_s=3600, min_stories=5,
                          no_data_windows=3, severity="warning")
        session.add_all([rule, spike])
        session.flush()
        assert rule.id is not None and spike.id is not None
        firing = Alert(rule_id=rule.id, rule_name=rule.name, entity="TICKER:TSLA", metric="mean_sentiment",
                       severity="critical", status="firing", started_at=now - timedelta(minutes=20), value=-0.9,
                       threshold=-0.3, evidence=_evidence(_window(now - timedelta(minutes=20), FIRING_STORIES, -0.9)))
        resolved_at = now - timedelta(hours=4, minutes=30)
        resolved = Alert(rule_id=rule.id, rule_name=rule.name, entity="TICKER:TSLA", metric="mean_sentiment",
                         severity="critical", status="resolved", started_at=now - timedelta(hours=5),
                         resolved_at=resolved_at, value=-0.5, resolved_value=0.1, threshold=-0.3,
                         evidence=_evidence(_window(now - timedelta(hours=5), 3, -0.5), _window(resolved_at, 4, 0.1)))
        # Written before alerts carried an explanation: the page falls back to the bare condition.
        legacy = Alert(rule_id=spike.id, rule_name=spike.name, entity="TICKER:AAPL", metric="volume_ratio",
                       severity="warning", status="resolved", started_at=now - timedelta(hours=11),
                       resolved_at=now - timedelta(hours=10), value=4.2, resolved_value=1.1, threshold=3.0,
                       evidence={"value": 4.2})
        session.add_all([firing, resolved, legacy])
        session.flush()
        session.add_all([
            AlertState(rule_id=rule.id, entity="TICKER:TSLA", state="firing", since=firing.started_at,
                       alert_id=firing.id, last_value=-0.9),
            AlertState(rule_id=spike.id, entity="TICKER:MSFT", state="pending", since=now - timedelta(minutes=3),
                       last_value=7.2, last_evaluated_at=now - timedelta(seconds=20)),
        ])
        # Three live consumers of the monitor's group (lag 42 + 8 + 5): one refused the champion, one reads another
        # topic than the settings name (as the demo's per-run topic) and is reconnecting to the broker; and one
        # that crashed a day ago, whose row the lag tile must ignore.
        session.add_all([
            ConsumerHeartbeat(member="worker-a:11", group_id="finpulse-monitor", topic="finpulse.news",
                              partitions=[0, 1], lag=42, messages_per_s=30.0, model_version="v2", updated_at=now),
            ConsumerHeartbeat(member="worker-b:12", group_id="finpulse-monitor", topic="finpulse.news",
                              partitions=[2, 3], lag=8, messages_per_s=28.0, model_version="v2",
                              status="model_refused", detail=REFUSED_DETAIL, updated_at=now - timedelta(seconds=5)),
            ConsumerHeartbeat(member="demo:15", group_id="finpulse-monitor", topic=OTHER_TOPIC, partitions=[0],
                              lag=5, model_version="v2", status="broker_reconnecting", detail=RECONNECT_DETAIL,
                              updated_at=now - timedelta(seconds=2)),
            ConsumerHeartbeat(member="worker-c:13", group_id="finpulse-monitor", topic="finpulse.news",
                              partitions=[], lag=1000, model_version="v1", updated_at=now - timedelta(days=1)),
            # A live consumer of another group (an ad-hoc replay): not the monitor's lag.
            ConsumerHeartbeat(member="laptop:14", group_id="adhoc-replay", topic="finpulse.news",
                              partitions=[0, 1, 2, 3], lag=999, model_version="v2", updated_at=now),
        ])
    engine.dispose()
    return Seeded(now=now, news_ids=[row.id for row in rows], recent_scored=RECENT_SCORED, firing=1, pending=1,
                  champion="v2", serving="v2", awaiting_labels=1, labelled_ids=set(labelled))
