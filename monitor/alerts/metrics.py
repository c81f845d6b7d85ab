"""What an alert rule looks at: the metrics of one window of stories, and the headlines behind it.

A rule's window is the sliding span ``(as_of - window_s, as_of]`` of event time: ``count``, ``mean_sentiment``,
``negative_share``, ``volume_surprise``, ``sentiment_z`` and ``sentiment_shrunk`` are computed from the stories in
it (and the entity's baseline before it, see :mod:`monitor.alerts.stats`), so the newest, partial bucket is never
judged as if it were complete. The legacy ``zscore``, ``volume_ratio`` and ``ewma_score`` are stored per bucket;
the window takes its most extreme bucket in the rule's direction. A window with fewer than the rule's
``min_stories`` stories has no value ("no data").
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from schemas.news import News
from schemas.signals import MARKET_KEY, NewsEntity

log = logging.getLogger(__name__)

EVIDENCE_HEADLINES = 5


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    start: datetime
    end: datetime
    buckets: int
    count: int
    duplicates: int
    mean_sentiment: float | None
    negative_share: float | None
    volume_surprise: float | None = None
    expected_count: float | None = None
    sentiment_z: float | None = None
    sentiment_shrunk: float | None = None
    baseline_mean: float | None = None
    baseline_sd: float | None = None
    zscore: float | None = None
    volume_ratio: float | None = None
    ewma_score: float | None = None

    def value(self, metric: str, min_stories: int = 1) -> float | None:
        """The metric, or None ("no data") when the window holds fewer than ``min_stories`` stories."""
        if self.count < min_stories:
            return None
        value = self.count if metric == "count" else getattr(self, metric)
        return None if value is None else float(value)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


def _lowest_first(comparator: str) -> bool:
    return comparator in ("<", "<=")


def top_headlines(session: Session, entity: str, metric: str, comparator: str, start: datetime,
                  end: datetime, limit: int = EVIDENCE_HEADLINES) -> list[dict[str, Any]]:
    """The distinct stories in the window that pushed the metric hardest: most negative first for a falling
    sentiment rule (and for negative_share), most positive first for a rising one, newest first for volume."""
    if entity == MARKET_KEY:
        score: Any = col(News.score)
        query = select(col(News.id), col(News.headline), score, col(News.source), col(News.published_at)).where(
            col(News.duplicate_of).is_(None), col(News.published_at) > start, col(News.published_at) <= end
        )
    else:
        # The entity's own score, which differs from the story's where per-entity sentiment exists.
        score = col(NewsEntity.score)
        query = select(col(News.id), col(News.headline), score, col(News.source), col(News.published_at)).join(
            NewsEntity, col(NewsEntity.news_id) == col(News.id)
        ).where(col(NewsEntity.entity) == entity, col(NewsEntity.published_at) > start,
                col(NewsEntity.published_at) <= end)
    if metric in ("count", "volume_ratio", "volume_surprise"):
        order = col(News.published_at).desc()
    elif metric == "negative_share" or _lowest_first(comparator):
        order = score.asc()
    else:
        order = score.desc()
    rows = session.execute(query.order_by(order, col(News.id)).limit(limit)).all()
    return [{"id": news_id, "headline": headline, "score": round(float(value), 4), "source": source,
             "published_at": published_at.isoformat()} for news_id, headline, value, source, published_at in rows]
