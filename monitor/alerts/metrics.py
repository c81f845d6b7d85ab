"""What an alert rule looks at: its metric over a window of signal buckets, and the headlines behind it.

A rule's window is the buckets of its entity that start in ``(as_of - window_s, as_of]``. ``count``,
``mean_sentiment`` and ``negative_share`` aggregate the window's sums (so a 15-minute window over 5-minute buckets
is one 15-minute bucket); ``zscore``, ``volume_ratio`` and ``ewma_score`` are already judged against a baseline per
bucket, so the window takes its most extreme bucket in the rule's direction (the lowest for ``<``/``<=``, the
highest for ``>``/``>=``): "any bucket in the window crossed". An empty window has ``count`` 0 and no other value.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from schemas.news import News
from schemas.signals import MARKET_KEY, EntitySignal, NewsEntity

log = logging.getLogger(__name__)

EVIDENCE_HEADLINES = 5
_PER_BUCKET = ("zscore", "volume_ratio", "ewma_score")


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    start: datetime
    end: datetime
    buckets: int
    count: int
    duplicates: int
    mean_sentiment: float | None
    negative_share: float | None
    zscore: float | None
    volume_ratio: float | None
    ewma_score: float | None

    def value(self, metric: str) -> float | None:
        value = getattr(self, metric)
        return None if value is None else float(value)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


def _lowest_first(comparator: str) -> bool:
    return comparator in ("<", "<=")


def window_metrics(session: Session, entity: str, as_of: datetime, window_s: int, width_s: int,
                   comparator: str) -> WindowMetrics:
    start = as_of - timedelta(seconds=window_s)
    rows = session.execute(
        select(EntitySignal).where(
            col(EntitySignal.entity) == entity, col(EntitySignal.bucket_s) == width_s,
            col(EntitySignal.bucket_start) > start, col(EntitySignal.bucket_start) <= as_of,
        )
    ).scalars().all()
    counted = [row for row in rows if row.count > 0]
    count = sum(row.count for row in counted)
    weight = sum(row.weight_sum for row in counted)
    extreme: dict[str, float | None] = {}
    pick = min if _lowest_first(comparator) else max
    for name in _PER_BUCKET:
        values = [float(getattr(row, name)) for row in counted if getattr(row, name) is not None]
        extreme[name] = pick(values) if values else None
    return WindowMetrics(
        start=start, end=as_of, buckets=len(counted), count=count,
        duplicates=sum(row.duplicates for row in rows),
        mean_sentiment=sum(row.weighted_score_sum for row in counted) / weight if weight > 0 else None,
        negative_share=sum(row.negative_count for row in counted) / count if count else None,
        zscore=extreme["zscore"], volume_ratio=extreme["volume_ratio"], ewma_score=extreme["ewma_score"],
    )


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
    if metric in ("count", "volume_ratio"):
        order = col(News.published_at).desc()
    elif metric == "negative_share" or _lowest_first(comparator):
        order = score.asc()
    else:
        order = score.desc()
    rows = session.execute(query.order_by(order, col(News.id)).limit(limit)).all()
    return [{"id": news_id, "headline": headline, "score": round(float(value), 4), "source": source,
             "published_at": published_at.isoformat()} for news_id, headline, value, source, published_at in rows]
