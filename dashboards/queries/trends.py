"""Read-only queries of the market and entity views. Plain functions of an Engine, free of Streamlit.

Every query is bounded (a time window or a LIMIT) and uses an index (``entity_signal`` by bucket, ``news`` by
``scored_at``, ``news_entity`` by entity and time), so a refresh every few seconds stays cheap. Results are small
DataFrames or frozen dataclasses, which the dashboard's TTL cache pickles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from monitor.signals.math import MIN_BASELINE_BUCKETS, SIGMA_FLOOR
from schemas.alerts import Alert, AlertState
from schemas.news import News
from schemas.registry import ModelVersion
from schemas.signals import MARKET_KEY, EntitySignal, NewsEntity
from schemas.types import utcnow

log = logging.getLogger(__name__)

SIGNAL_COLUMNS = ["entity", "bucket_start", "count", "negative_count", "weight_sum", "weighted_score_sum",
                  "mean_sentiment", "negative_share", "zscore", "volume_ratio", "ewma_score"]
# Charts stay under ~200 time columns: long windows are drawn with wider buckets than the signal's own.
MAX_COLUMNS = 200
RATE_WINDOW_MIN = 5  # the Overview's stories-per-minute tile averages this many minutes
DISPLAY_WIDTHS_S = (300, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400)


@dataclass(frozen=True, slots=True)
class Tiles:
    """The Overview's live numbers (the consumers' lag: :mod:`dashboards.queries.consumers`)."""

    last_5min: int  # stories scored in the last five minutes (by scored_at: the consumer's throughput)
    per_minute: float  # the same, per minute
    newest_scored_at: datetime | None
    firing: int
    pending: int
    serving_version: str | None  # the model version that scored the newest story
    champion_version: str | None  # the registry's champion (the consumer switches to it within a poll interval)
    published_5min: int = 0  # stories published in the last five minutes (by published_at: the news flow)

    @property
    def published_per_minute(self) -> float:
        return self.published_5min / RATE_WINDOW_MIN


@dataclass(frozen=True, slots=True)
class Headline:
    news_id: str
    published_at: datetime
    source: str
    headline: str
    url: str | None
    sentiment: str
    score: float
    confidence: float
    entities: list[dict[str, Any]]


def tiles(engine: Engine) -> Tiles:
    now = utcnow()
    since = now - timedelta(minutes=RATE_WINDOW_MIN)
    with Session(engine) as session:
        recent = session.exec(select(func.count()).select_from(News).where(col(News.scored_at) >= since)).one()
        # Bounded above too: a story stamped in the future is not part of the last five minutes' flow.
        published = session.exec(select(func.count()).select_from(News).where(
            col(News.published_at) >= since, col(News.published_at) <= now)).one()
        newest = session.exec(select(func.max(News.scored_at))).one()
        serving = session.exec(
            select(News.model_version).order_by(col(News.scored_at).desc()).limit(1)
        ).first()
        firing = session.exec(select(func.count()).select_from(Alert).where(Alert.status == "firing")).one()
        pending = session.exec(
            select(func.count()).select_from(AlertState).where(AlertState.state == "pending")
        ).one()
        champion = session.exec(
            select(ModelVersion.version).where(ModelVersion.status == "champion").limit(1)
        ).first()
    return Tiles(
        last_5min=int(recent), per_minute=int(recent) / RATE_WINDOW_MIN,
        newest_scored_at=_aware(newest),
        firing=int(firing), pending=int(pending),
        serving_version=serving,
        champion_version=champion,
        published_5min=int(published),
    )


def _aware(value: Any) -> datetime | None:
    # func.max() bypasses the UTCDateTime column type, so SQLite hands back a naive string or datetime.
    if value is None:
        return None
    moment = pd.Timestamp(value)
    aware: datetime = (moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")).to_pydatetime()
    return aware


def _signals_frame(rows: list[EntitySignal]) -> pd.DataFrame:
    frame = pd.DataFrame([{name: getattr(row, name) for name in SIGNAL_COLUMNS} for row in rows],
                         columns=SIGNAL_COLUMNS)
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True)
    for name in SIGNAL_COLUMNS[2:]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def signals(engine: Engine, entities: tuple[str, ...], hours: float, bucket_s: int) -> pd.DataFrame:
    """Buckets of the given entities over the last ``hours`` (``*`` is the whole market)."""
    since = utcnow() - timedelta(hours=hours)
    with Session(engine) as session:
        rows = session.exec(
            select(EntitySignal)
            .where(EntitySignal.bucket_s == bucket_s, col(EntitySignal.entity).in_(entities))
            .where(col(EntitySignal.bucket_start) >= since)
            .order_by(col(EntitySignal.bucket_start))
        ).all()
    return _signals_frame(list(rows))


def market_trend(engine: Engine, hours: float, bucket_s: int) -> pd.DataFrame:
    return signals(engine, (MARKET_KEY,), hours, bucket_s)


def heatmap(engine: Engine, hours: float, bucket_s: int, top: int) -> pd.DataFrame:
    """Buckets of the ``top`` entities with the most stories in the window (the market excluded)."""
    since = utcnow() - timedelta(hours=hours)
    c = EntitySignal
    with Session(engine) as session:
        busiest = session.exec(
            select(c.entity).where(c.bucket_s == bucket_s, col(c.bucket_start) >= since, c.entity != MARKET_KEY)
            .group_by(c.entity).order_by(func.sum(c.count).desc(), c.entity).limit(top)
        ).all()
    if not busiest:
        return _signals_frame([])
    return signals(engine, tuple(busiest), hours, bucket_s)


def top_movers(engine: Engine, bucket_s: int, lookback_buckets: int, limit: int,
               min_stories: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each entity's newest bucket of the last ``lookback_buckets``: (by |z-score|, by volume ratio).

    Entities whose newest bucket has fewer than ``min_stories`` stories are left out: one story's sentiment
    against a baseline gives huge z-scores that mean nothing."""
    since = utcnow() - timedelta(seconds=bucket_s * lookback_buckets)
    with Session(engine) as session:
        rows = session.exec(
            select(EntitySignal)
            .where(EntitySignal.bucket_s == bucket_s, col(EntitySignal.bucket_start) >= since)
            .where(EntitySignal.entity != MARKET_KEY, EntitySignal.count > 0)
        ).all()
    frame = _signals_frame(list(rows))
    latest = frame.sort_values("bucket_start").groupby("entity", as_index=False).tail(1)
    latest = latest[latest["count"] >= min_stories]
    by_z = latest.dropna(subset=["zscore"])
    by_z = by_z.reindex(by_z["zscore"].abs().sort_values(ascending=False).index).head(limit)
    by_volume = latest.dropna(subset=["volume_ratio"]).sort_values("volume_ratio", ascending=False).head(limit)
    return by_z.reset_index(drop=True), by_volume.reset_index(drop=True)


def search_entities(engine: Engine, text: str, days: float, limit: int) -> list[str]:
    """Entity keys seen in the last ``days`` containing ``text`` (case-insensitive), busiest first."""
    since = utcnow() - timedelta(days=days)
    needle = text.strip().lstrip("$")
    c = EntitySignal
    query = select(c.entity).where(col(c.bucket_start) >= since, c.entity != MARKET_KEY)
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(c.entity).ilike(f"%{escaped}%", escape="\\"))
    with Session(engine) as session:
        found = session.exec(
            query.group_by(c.entity).order_by(func.sum(c.count).desc(), c.entity).limit(limit)
        ).all()
    return list(found)


def entity_trend(engine: Engine, entity: str, hours: float, bucket_s: int, baseline_days: float) -> pd.DataFrame:
    """The entity's buckets over ``hours`` with the baseline band the z-score is measured against.

    ``baseline_mean``/``baseline_std`` follow :mod:`monitor.signals.math`: the mean and (floored) population
    standard deviation of the non-empty bucket means in the ``baseline_days`` before each bucket.
    """
    frame = signals(engine, (entity,), hours + baseline_days * 24, bucket_s)
    nonempty = frame[frame["count"] > 0].set_index("bucket_start").sort_index()
    window = pd.Timedelta(days=baseline_days)
    rolling = nonempty["mean_sentiment"].rolling(window, closed="left")
    stats = pd.DataFrame({"n": rolling.count(), "mu": rolling.mean(), "sq": (nonempty["mean_sentiment"] ** 2)
                          .rolling(window, closed="left").mean()})
    std = (stats["sq"] - stats["mu"] ** 2).clip(lower=0) ** 0.5
    enough = stats["n"] >= MIN_BASELINE_BUCKETS
    nonempty = nonempty.assign(baseline_mean=stats["mu"].where(enough),
                               baseline_std=std.clip(lower=SIGMA_FLOOR).where(enough))
    shown = nonempty[nonempty.index >= utcnow() - timedelta(hours=hours)]
    return shown.reset_index()


def entity_alerts(engine: Engine, entity: str, hours: float) -> pd.DataFrame:
    since = utcnow() - timedelta(hours=hours)
    columns = ["id", "rule_name", "severity", "status", "started_at", "resolved_at", "value", "threshold", "metric"]
    with Session(engine) as session:
        rows = session.exec(
            select(Alert).where(Alert.entity == entity, col(Alert.started_at) >= since)
            .order_by(col(Alert.started_at).desc()).limit(200)
        ).all()
    frame = pd.DataFrame([{name: getattr(row, name) for name in columns} for row in rows], columns=columns)
    for name in ("started_at", "resolved_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def entity_headlines(engine: Engine, entity: str, limit: int) -> list[Headline]:
    """The newest distinct stories that mention ``entity``, via the ``news_entity`` index."""
    with Session(engine) as session:
        rows = session.exec(
            select(News).join(NewsEntity, col(NewsEntity.news_id) == col(News.id))
            .where(NewsEntity.entity == entity)
            .order_by(col(NewsEntity.published_at).desc()).limit(limit)
        ).all()
        return [_headline(row) for row in rows]


def _headline(row: News) -> Headline:
    return Headline(news_id=row.id, published_at=row.published_at, source=row.source, headline=row.headline,
                    url=row.url, sentiment=row.sentiment, score=row.score, confidence=row.confidence,
                    entities=list(row.entities))


def display_width(hours: float, bucket_s: int) -> int:
    """The narrowest bucket width (a multiple of the signal's) that draws ``hours`` in <= MAX_COLUMNS columns."""
    needed = hours * 3600 / MAX_COLUMNS
    for width in DISPLAY_WIDTHS_S:
        if width >= needed and width % bucket_s == 0:
            return max(width, bucket_s)
    return max(bucket_s, int(needed) // bucket_s * bucket_s + bucket_s)


def resample(frame: pd.DataFrame, width_s: int) -> pd.DataFrame:
    """Merge buckets into ``width_s``-wide ones: sums add up, the mean is re-weighted exactly as the signal
    writer weights it, and z-score / volume ratio keep the most extreme bucket (what an analyst looks for)."""
    if frame.empty:
        return frame
    start = frame["bucket_start"].dt.floor(f"{width_s}s")
    grouped = frame.assign(bucket_start=start).groupby(["entity", "bucket_start"])
    sums = grouped[["count", "negative_count", "weight_sum", "weighted_score_sum"]].sum()
    out = sums.assign(
        mean_sentiment=(sums["weighted_score_sum"] / sums["weight_sum"]).where(sums["weight_sum"] > 0),
        negative_share=(sums["negative_count"] / sums["count"]).where(sums["count"] > 0),
        zscore=grouped["zscore"].agg(lambda z: z.loc[z.abs().idxmax()] if z.notna().any() else float("nan")),
        volume_ratio=grouped["volume_ratio"].max(),
        ewma_score=grouped["ewma_score"].last(),
    )
    extra = [name for name in ("baseline_mean", "baseline_std") if name in frame]
    if extra:  # the entity view's band: the average yardstick over the merged buckets
        out = out.join(grouped[extra].mean())
    return out.reset_index()[SIGNAL_COLUMNS + extra]
