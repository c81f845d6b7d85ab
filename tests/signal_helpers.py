"""Scored News rows for signal and alert tests, built without a model."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from schemas.news import News
from schemas.types import utcnow

_offsets = itertools.count()


def scored_news(
    news_id: str, published_at: datetime, headline: str, score: float, *, tickers: list[str] | None = None,
    entities: list[dict[str, Any]] | None = None, confidence: float = 0.9, source: str = "wire",
) -> News:
    """A scored story; the class probabilities are derived from ``score`` and ``confidence``."""
    sentiment = "negative" if score < -0.2 else "positive" if score > 0.2 else "neutral"
    p_pos = max(0.0, min(1.0, (1 + score) / 2))
    return News(
        id=news_id, source=source, published_at=published_at, headline=headline, tickers=tickers or [],
        kafka_topic="t", kafka_partition=0, kafka_offset=next(_offsets), sentiment=sentiment,
        p_negative=1 - p_pos, p_neutral=0.0, p_positive=p_pos, score=score, confidence=confidence,
        entities=entities or [], model_version="test", ingested_at=utcnow(),
    )


def entity(text: str, kind: str, score: float, confidence: float = 0.8) -> dict[str, Any]:
    sentiment = "negative" if score < -0.2 else "positive" if score > 0.2 else "neutral"
    return {"text": text, "type": kind, "start": 0, "end": len(text), "sentiment": sentiment,
            "probs": [0.0, 0.0, 0.0], "score": score, "confidence": confidence}
