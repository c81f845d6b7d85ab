"""Order independence (issue #16): the same stories, in any order and any batch split, give the same signals, the
same entity mentions, the same near-duplicate links and the same alerts, on SQLite and on PostgreSQL.

Each example stores one stream twice: in time order, one story per batch, into one database, and in a drawn order
and batch split into another; then it compares every column. Both databases are migrated once per test and emptied
between examples (a fresh PostgreSQL database per example would cost more than the example).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.rules import add_rule, validate_rule
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.settings import Settings, load_settings
from monitor.signals.buckets import record_batch
from schemas.alerts import Alert, AlertClock, AlertRule, AlertState, Notification
from schemas.news import News
from schemas.signals import EntitySignal, NewsEntity
from tests.conftest import make_scratch_pg
from tests.signal_helpers import entity, scored_news

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
SPAN_S = 3 * 3600
BUCKET_S, STEP_S, LATENESS_S = 60, 30, 300
# A story may arrive at most this far (event time) behind the newest stored one: the evaluator's lateness.
MAX_DISORDER_S = LATENESS_S
TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA"]
ORGS = ["Apple Inc.", "Microsoft", "Tesla, Inc", "Nvidia Corp"]
ADMIN = Principal("test-admin", "admin", "cli")
WALL = datetime(2030, 1, 1, tzinfo=UTC)
TABLES = (News, NewsEntity, EntitySignal, AlertRule, AlertState, AlertClock, Alert, Notification)  # audit: append-only
# Rules over every metric family: read-time statistics, bucket sums and the stored legacy columns.
RULES: list[dict[str, Any]] = [
    {"name": "surprise", "entity": "TICKER:*", "metric": "volume_surprise", "comparator": ">", "threshold": 2.0,
     "window_s": 300, "pending_s": 0, "min_stories": 2},
    {"name": "sent-z", "entity": "TICKER:*", "metric": "sentiment_z", "comparator": "<", "threshold": -1.5,
     "window_s": 600, "pending_s": 60, "min_stories": 2},
    {"name": "shrunk", "entity": "ORG:*", "metric": "sentiment_shrunk", "comparator": "<", "threshold": -0.2,
     "window_s": 300, "pending_s": 0, "min_stories": 1},
    {"name": "mean", "entity": "TICKER:*", "metric": "mean_sentiment", "comparator": "<", "threshold": -0.5,
     "recovery_threshold": -0.1, "window_s": 300, "pending_s": 60, "min_stories": 2, "repeat_interval_s": 600},
    {"name": "count", "entity": "TICKER:*", "metric": "count", "comparator": ">=", "threshold": 3,
     "window_s": 120, "pending_s": 0, "min_stories": 1},
    {"name": "zscore", "entity": "TICKER:*", "metric": "zscore", "comparator": "<", "threshold": -1.0,
     "window_s": 180, "pending_s": 0, "min_stories": 1},
    {"name": "ratio", "entity": "TICKER:*", "metric": "volume_ratio", "comparator": ">", "threshold": 2.0,
     "window_s": 180, "pending_s": 30, "min_stories": 1},
]


def _settings() -> Settings:
    # A one-hour baseline, shorter than the stream: late data meets both short and long refresh spans.
    return load_settings(signal_bucket_s=BUCKET_S, signal_baseline_days=1 / 24, signal_ewma_alpha=0.3,
                         dedup_window_s=600, alert_step_s=STEP_S, alert_lateness_s=LATENESS_S,
                         alert_notify_max_age_s=0, notify_urls=[], notify_secrets_file=None)


@dataclass(frozen=True)
class Story:
    """A story before it is a row: each database gets its own News objects."""

    id: str
    offset_s: float
    headline: str
    score: float
    confidence: float
    tickers: tuple[str, ...]
    org: tuple[str, float] | None

    @property
    def published_at(self) -> datetime:
        return T0 + timedelta(seconds=self.offset_s)

    def news(self) -> News:
        ents = [entity(self.org[0], "ORG", self.org[1])] if self.org else []
        return scored_news(self.id, self.published_at, self.headline, self.score, tickers=list(self.tickers),
                           entities=ents, confidence=self.confidence)


def _decimals(low: float, high: float) -> st.SearchStrategy[float]:
    # Six decimals, like a model's probabilities: PostgreSQL refuses a product that underflows (1e-200 squared).
    return st.floats(min_value=low, max_value=high).map(lambda x: round(x, 6))


SCORES, BAD_SCORES, CONFIDENCES = _decimals(-1, 1), _decimals(-1, -0.6), _decimals(0.34, 1)


@st.composite
def streams(draw: st.DrawFn) -> list[Story]:
    """30-60 stories over three hours on four tickers and four organisations: one every ten minutes (so that
    baselines fill and z-scores exist), more at random times, a burst of bad news on one ticker (so that alerts
    fire), and some near-duplicate copies published before or after their first copy."""
    stories = [Story(f"t{k:02d}", k * 600, f"market wrap {k}", draw(SCORES), 0.7,
                     tuple(draw(st.lists(st.sampled_from(TICKERS), max_size=2, unique=True))), None)
               for k in range(SPAN_S // 600 + 1)]
    for i in range(draw(st.integers(min_value=5, max_value=25))):
        org = draw(st.one_of(st.none(), st.tuples(st.sampled_from(ORGS), SCORES)))
        tickers = draw(st.lists(st.sampled_from(TICKERS), max_size=2, unique=True))
        stories.append(Story(f"s{i:02d}", draw(st.integers(min_value=0, max_value=SPAN_S)), f"story {i} on markets",
                             draw(SCORES), draw(CONFIDENCES), tuple(tickers), org))
    burst_at = draw(st.integers(min_value=3600, max_value=SPAN_S - 600))
    ticker = draw(st.sampled_from(TICKERS))
    for i in range(draw(st.integers(min_value=5, max_value=9))):
        score = draw(BAD_SCORES)
        stories.append(Story(f"b{i}", burst_at + draw(st.integers(min_value=0, max_value=240)),
                             f"{ticker} slumps as probe widens, part {i}", score, 0.9, (ticker,),
                             ("Apple Inc.", -0.8) if i % 2 else None))
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        first = draw(st.sampled_from(stories))
        shift = draw(st.integers(min_value=-900, max_value=900))  # within or beyond the 600 s dedup window
        stories.append(Story(f"d{i}", min(SPAN_S, max(0, first.offset_s + shift)),
                             f"RT @desk: {first.headline.upper()}!!", draw(SCORES), 0.8, first.tickers, first.org))
    return stories


def _in_time_order(stories: Sequence[Story]) -> list[Story]:
    return sorted(stories, key=lambda s: (s.offset_s, s.id))


def _split(stories: Sequence[Story], sizes: Sequence[int]) -> list[list[Story]]:
    out: list[list[Story]] = []
    index, sizes = 0, list(sizes) or [1]
    while index < len(stories):
        size = sizes[len(out) % len(sizes)]
        out.append(list(stories[index:index + size]))
        index += size
    return out


def _store(engine: Engine, batch: Sequence[Story], s: Settings) -> None:
    rows = [story.news() for story in batch]
    with db.session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        record_batch(session, rows, s)


def _clear(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        for table in TABLES:
            session.execute(delete(table))


def _snapshot(engine: Engine) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every stored column that order could touch, keyed by natural keys (ids and updated_at excluded)."""
    with Session(engine) as session:
        signals = {(r.entity, r.bucket_s, r.bucket_start): r.model_dump(exclude={"updated_at"})
                   for r in session.execute(select(EntitySignal)).scalars()}
        mentions = {(r.news_id, r.entity): r.model_dump() for r in session.execute(select(NewsEntity)).scalars()}
        news = {r.id: {"content_hash": r.content_hash, "duplicate_of": r.duplicate_of}
                for r in session.execute(select(News)).scalars()}
    return {"entity_signal": signals, "news_entity": mentions, "news": news}


def _alerts(engine: Engine) -> dict[str, dict[Any, dict[str, Any]]]:
    """Alerts, their evidence and notifications, and the rule states. Texts that print a value are left out: a
    value of 0 may print as +0.00 or -0.00 (float rounding differs with the evaluated ranges); the values are
    compared as numbers."""
    with Session(engine) as session:
        rules = {r.id: r.name for r in session.execute(select(AlertRule)).scalars()}
        alerts = {a.id: a for a in session.execute(select(Alert)).scalars()}
        keys = {i: (rules[a.rule_id], a.entity, a.started_at) for i, a in alerts.items()}
        out: dict[str, dict[Any, dict[str, Any]]] = {
            "alert": {keys[i]: {"status": a.status, "resolved_at": a.resolved_at, "value": a.value,
                                "resolved_value": a.resolved_value,
                                "evidence": {k: v for k, v in a.evidence.items() if not k.endswith("explanation")}}
                      for i, a in alerts.items()},
            "notification": {},
            "state": {(rules[s.rule_id], s.entity): {"state": s.state, "since": s.since, "value": s.last_value,
                                                     "no_data_since": s.no_data_since,
                                                     "notified": s.last_notified_at}
                      for s in session.execute(select(AlertState)).scalars()},
        }
        for n in session.execute(select(Notification).order_by(Notification.id)).scalars():  # type: ignore[arg-type]
            out["notification"].setdefault(keys[n.alert_id], {}).setdefault("sent", []).append((n.channel, n.kind))
    return out


def _assert_same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {set(got) ^ set(want)}"
        for key in want:
            _assert_same(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), f"{where}: {got} != {want}"
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_same(a, b, f"{where}[{index}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.fixture
def two_databases(db_url: str, tmp_path: Path, pg_available: bool) -> Iterator[tuple[Engine, Engine]]:
    """``db_url`` and a second migrated database of the same kind, as engines."""

    def pair(other: str) -> Iterator[tuple[Engine, Engine]]:
        engines = (db.make_engine(db_url), db.make_engine(other))
        yield engines
        for engine in engines:
            engine.dispose()

    if db_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'shuffled.db'}"
        db.upgrade(other)
        yield from pair(other)
        return
    for other in make_scratch_pg(pg_available):
        db.upgrade(other)
        yield from pair(other)


# Sized so that the file runs in about 30 s per database; each example stores its stream twice. The databases are
# reused across examples (emptied by _clear), hence the function-scoped fixture health check is off.
_EXAMPLES = settings(deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(_EXAMPLES, max_examples=10)
@given(stream=streams(), data=st.data())
def test_signals_do_not_depend_on_order_or_batches(two_databases: tuple[Engine, Engine], stream: list[Story],
                                                   data: st.DataObject) -> None:
    in_order, shuffled = two_databases
    s = _settings()
    order = data.draw(st.permutations(stream), label="arrival order")
    sizes = data.draw(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8), label="batch sizes")
    for engine in two_databases:
        _clear(engine)
    for story in _in_time_order(stream):
        _store(in_order, [story], s)
    for batch in _split(order, sizes):
        _store(shuffled, batch, s)
    want = _snapshot(in_order)
    assert any(row["zscore"] is not None for row in want["entity_signal"].values())  # baselines were exercised
    _assert_same(_snapshot(shuffled), want, "signals")


def _bounded_disorder(stream: Sequence[Story], delays: Sequence[int]) -> list[Story]:
    """Arrival order when each story is delayed by up to MAX_DISORDER_S of event time: a story arrives after
    another only if it was published less than MAX_DISORDER_S before it."""
    return [story for _, story in sorted(((story.offset_s + delays[i % len(delays)], story.id), story)
                                         for i, story in enumerate(stream))]


def _run_with_alerts(engine: Engine, batches: Sequence[Sequence[Story]], s: Settings) -> None:
    with db.session_scope(engine) as session:
        for rule in RULES:
            add_rule(session, validate_rule({"channels": ["hook"], "repeat_interval_s": 0, **rule}), by=ADMIN)
    evaluator = AlertEvaluator(s, engine)
    watermark: datetime | None = None
    try:
        for batch in batches:
            _store(engine, batch, s)
            newest = max(story.published_at for story in batch)
            watermark = newest if watermark is None else max(watermark, newest)
            evaluator.evaluate_until(watermark - timedelta(seconds=LATENESS_S), WALL)
        evaluator.evaluate_until(T0 + timedelta(seconds=SPAN_S + 2 * 3600), WALL)
    finally:
        evaluator.close()


@settings(_EXAMPLES, max_examples=6)
@given(stream=streams(), data=st.data())
def test_alerts_do_not_depend_on_order_or_batches(two_databases: tuple[Engine, Engine], stream: list[Story],
                                                  data: st.DataObject) -> None:
    in_order, shuffled = two_databases
    s = _settings()
    delays = data.draw(st.lists(st.integers(min_value=0, max_value=MAX_DISORDER_S - 1), min_size=len(stream),
                                max_size=len(stream)), label="delays")
    sizes = data.draw(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=8), label="batch sizes")
    for engine in two_databases:
        _clear(engine)
    _run_with_alerts(in_order, [[story] for story in _in_time_order(stream)], s)
    _run_with_alerts(shuffled, _split(_bounded_disorder(stream, delays), sizes), s)
    want = _alerts(in_order)
    assert want["alert"] and want["notification"], "the stream must fire alerts, or the comparison proves nothing"
    _assert_same(_alerts(shuffled), want, "alerts")
    _assert_same(_snapshot(shuffled), _snapshot(in_order), "signals")
