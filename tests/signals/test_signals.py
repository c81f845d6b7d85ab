"""Signals: incremental buckets equal a from-scratch computation; duplicates; baselines; concurrent writers."""

from __future__ import annotations

import math
import random
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitor.core.db import make_engine, session_scope
from monitor.core.settings import Settings, load_settings
from monitor.signals.buckets import record_batch, row_observations
from monitor.signals.dedup import content_hash, normalise_text
from schemas.news import News
from schemas.signals import EntitySignal, NewsEntity, parse_entity_ref
from tests.signal_helpers import entity, scored_news

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
WIDTH = 300


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"signal_bucket_s": WIDTH, "signal_baseline_days": 0.05, "signal_ewma_alpha": 0.3,
                              "dedup_window_s": 3600}
    values.update(overrides)
    return load_settings(**values)


def _store(url: str, batches: Sequence[Sequence[News]], settings: Settings) -> None:
    engine = make_engine(url)
    for batch in batches:
        with session_scope(engine) as session:
            session.add_all(batch)
            session.flush()
            record_batch(session, batch, settings)
    engine.dispose()


def _signals(url: str) -> dict[tuple[str, datetime], EntitySignal]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = session.exec(select(EntitySignal)).scalars().all()  # type: ignore[call-overload]
    engine.dispose()
    return {(row.entity, row.bucket_start): row for row in rows}


def _reference(rows: Sequence[News], settings: Settings) -> dict[tuple[str, datetime], dict[str, Any]]:
    """The README's formulas applied from scratch to all rows at once."""
    width, window = settings.signal_bucket_s, timedelta(days=settings.signal_baseline_days)
    originals: dict[str, list[datetime]] = defaultdict(list)
    buckets: dict[tuple[str, datetime], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.published_at, r.id)):
        digest = content_hash(row.headline)
        duplicate = any(abs(t - row.published_at).total_seconds() <= settings.dedup_window_s
                        for t in originals[digest])
        if not duplicate:
            originals[digest].append(row.published_at)
        start = datetime.fromtimestamp(row.published_at.timestamp() // width * width, UTC)
        for obs in row_observations(row):
            b = buckets.setdefault((obs.key, start), {"count": 0, "duplicates": 0, "neg": 0, "w": 0.0, "ws": 0.0})
            if duplicate:
                b["duplicates"] += 1
                continue
            b["count"] += 1
            b["neg"] += obs.negative
            b["w"] += obs.confidence
            b["ws"] += obs.confidence * obs.score
    for (key, start), b in sorted(buckets.items(), key=lambda item: item[0][1]):
        b["mean"] = b["ws"] / b["w"] if b["count"] else None
        earlier = [(s, o) for (k, s), o in buckets.items() if k == key and start - window <= s < start and o["count"]]
        means = [o["mean"] for _, o in earlier]
        b["zscore"] = None
        if b["mean"] is not None and len(means) >= 3:
            mu = sum(means) / len(means)
            sigma = math.sqrt(max(sum(m * m for m in means) / len(means) - mu * mu, 0))
            b["zscore"] = (b["mean"] - mu) / max(sigma, 0.05)
        stories = sum(o["count"] for _, o in earlier)
        b["volume_ratio"] = None
        if stories and b["count"]:
            slots = (start - max(start - window, min(s for s, _ in earlier))).total_seconds() / width
            b["volume_ratio"] = b["count"] / (stories / slots)
        previous = max(earlier, key=lambda e: e[0])[1]["ewma"] if earlier else None
        alpha = settings.signal_ewma_alpha
        b["ewma"] = (previous if b["mean"] is None else b["mean"] if previous is None
                     else alpha * b["mean"] + (1 - alpha) * previous)
    return buckets


def _random_stream(seed: int, n: int, duplicate_share: float = 0.15) -> list[News]:
    rng = random.Random(seed)
    tickers = ["AAPL", "MSFT", "TSLA", "NVDA"]
    orgs = ["Apple Inc.", "apple inc", "Microsoft", "Tesla, Inc"]
    rows: list[News] = []
    for i in range(n):
        at = T0 + timedelta(seconds=rng.uniform(0, 3 * 3600))
        if rows and rng.random() < duplicate_share:
            first = rng.choice(rows)
            headline = f"RT @desk: {first.headline.upper()} https://t.co/{i}"
            rows.append(scored_news(f"n{i}", first.published_at + timedelta(seconds=rng.uniform(0, 600)),
                                    headline, rng.uniform(-1, 1), tickers=list(first.tickers)))
            continue
        ents = [entity(rng.choice(orgs), "ORG", rng.uniform(-1, 1), rng.uniform(0.4, 1))] if rng.random() < 0.5 else []
        rows.append(scored_news(f"n{i}", at, f"story {i} about markets", rng.uniform(-1, 1),
                                tickers=rng.sample(tickers, rng.randint(0, 2)), entities=ents,
                                confidence=rng.uniform(0.34, 1)))
    return rows


def _batches(rows: list[News], rng: random.Random) -> list[list[News]]:
    out, index = [], 0
    while index < len(rows):
        size = rng.randint(1, 25)
        out.append(rows[index:index + size])
        index += size
    return out


def _assert_close(a: float | None, b: float | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if a is not None and b is not None:
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), what


def test_incremental_signals_equal_a_from_scratch_computation(db_url: str) -> None:
    settings = _settings()
    rows = sorted(_random_stream(1, 400), key=lambda r: (r.published_at, r.id))
    expected = _reference(rows, settings)
    _store(db_url, _batches(rows, random.Random(2)), settings)
    stored = _signals(db_url)
    assert set(stored) == set(expected)
    for key, want in expected.items():
        got = stored[key]
        assert (got.count, got.duplicates, got.negative_count) == (want["count"], want["duplicates"], want["neg"]), key
        _assert_close(got.weight_sum, want["w"], f"{key} weight")
        _assert_close(got.mean_sentiment, want["mean"], f"{key} mean")
        _assert_close(got.negative_share, want["neg"] / want["count"] if want["count"] else None, f"{key} share")
        _assert_close(got.zscore, want["zscore"], f"{key} zscore")
        _assert_close(got.volume_ratio, want["volume_ratio"], f"{key} volume ratio")
        _assert_close(got.ewma_score, want["ewma"], f"{key} ewma")
    assert any(w["zscore"] is not None for w in expected.values())
    assert stored[("*", min(s for _, s in stored))].count > 0


def test_sums_do_not_depend_on_arrival_order(sqlite_url: str) -> None:
    from monitor.core.db import upgrade

    upgrade(sqlite_url)
    settings = _settings()
    rows = _random_stream(3, 150, duplicate_share=0)
    random.Random(4).shuffle(rows)
    expected = _reference(rows, settings)
    _store(sqlite_url, _batches(rows, random.Random(5)), settings)
    stored = _signals(sqlite_url)
    for key, want in expected.items():
        assert (stored[key].count, stored[key].negative_count) == (want["count"], want["neg"])
        _assert_close(stored[key].mean_sentiment, want["mean"], f"{key} mean")


def test_near_duplicates_count_once_and_link_to_the_first_story(db_url: str) -> None:
    settings = _settings()
    first = scored_news("a", T0, "Apple plunges 5% after earnings miss", -0.9, tickers=["AAPL"])
    same_batch = scored_news("b", T0 + timedelta(seconds=30), "APPLE PLUNGES 5% AFTER EARNINGS MISS!!", -0.8,
                             tickers=["AAPL"], source="other")
    retweet = scored_news("c", T0 + timedelta(seconds=90), "RT @wire: Apple plunges 5% after earnings miss "
                          "https://t.co/xyz", -0.7, tickers=["AAPL"], source="twitter")
    later = scored_news("d", T0 + timedelta(hours=3), "Apple plunges 5% after earnings miss", -0.9, tickers=["AAPL"])
    _store(db_url, [[same_batch, first], [retweet], [later]], settings)
    stored = _signals(db_url)
    bucket = stored[("TICKER:AAPL", T0)]
    assert (bucket.count, bucket.duplicates) == (1, 2)
    assert stored[("*", T0)].count == 1
    assert bucket.mean_sentiment == pytest.approx(-0.9)  # the duplicates' scores do not move the mean
    engine = make_engine(db_url)
    with Session(engine) as session:
        links = {n.id: n.duplicate_of for n in session.exec(select(News)).scalars()}  # type: ignore[call-overload]
        mentions = session.exec(select(NewsEntity.news_id)).scalars().all()  # type: ignore[call-overload]
    engine.dispose()
    # Outside the dedup window the same headline is a new story again.
    assert links == {"a": None, "b": "a", "c": "a", "d": None}
    assert sorted(mentions) == ["a", "d"]


def test_text_normalisation() -> None:
    assert normalise_text("RT @wire: RT @x: Apple PLUNGES 5%!! https://t.co/x #AAPL") == "apple plunges 5% aapl"
    assert parse_entity_ref("$aapl") == "TICKER:AAPL"
    assert parse_entity_ref("org: Apple Inc.'s") == "ORG:apple inc"
    assert parse_entity_ref("*") == "*"
    with pytest.raises(ValueError, match="TYPE:name"):
        parse_entity_ref("FOO:bar")


def test_zscore_and_volume_ratio_against_a_constructed_baseline(db_url: str) -> None:
    settings = _settings(signal_baseline_days=1.0)
    w = timedelta(seconds=WIDTH)
    baseline = [scored_news(f"b{i}", T0 + i * w, f"baseline story {i}", s, tickers=["XYZ"], confidence=1.0)
                for i, s in enumerate([0.1, 0.3, 0.1, 0.3])]
    burst = [scored_news(f"x{i}", T0 + 4 * w + timedelta(seconds=i), f"burst {i}", -0.8, tickers=["XYZ"],
                         confidence=1.0) for i in range(2)]
    _store(db_url, [baseline[:1], baseline[1:3], baseline[3:], burst], settings)
    stored = _signals(db_url)
    first, third, now = (stored[("TICKER:XYZ", T0 + k * w)] for k in (0, 2, 4))
    assert (first.zscore, first.volume_ratio, first.baseline_count) == (None, None, 0)  # cold start
    assert third.zscore is None and third.volume_ratio == pytest.approx(1.0)  # 2 baseline buckets: no z yet
    # Baseline bucket means 0.1, 0.3, 0.1, 0.3: mean 0.2, std 0.1. Burst mean -0.8 -> z = -10.
    assert now.zscore == pytest.approx(-10.0)
    # 4 stories over the 4 slots since the entity's first bucket: 1 per bucket; the burst has 2.
    assert now.volume_ratio == pytest.approx(2.0)
    assert now.ewma_score == pytest.approx(0.3 * -0.8 + 0.7 * stored[("TICKER:XYZ", T0 + 3 * w)].ewma_score)


def test_concurrent_writers_add_atomically(db_url: str) -> None:
    settings = _settings()
    rows = [scored_news(f"c{i}", T0 + timedelta(seconds=i), f"distinct story {i}", -0.5, tickers=["AAPL", "MSFT"])
            for i in range(120)]
    errors: list[BaseException] = []

    def writer(part: list[News]) -> None:
        try:
            _store(db_url, [part[i:i + 5] for i in range(0, len(part), 5)], settings)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(rows[k::3],)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = _signals(db_url)
    assert sum(s.count for (key, _), s in stored.items() if key == "TICKER:AAPL") == 120
    assert sum(s.count for (key, _), s in stored.items() if key == "*") == 120
