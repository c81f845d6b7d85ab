"""Reads of the labelling queue and the model registry. Plain functions of an Engine, free of Streamlit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from schemas.consumers import ConsumerHeartbeat
from schemas.news import News, NewsIn
from schemas.registry import LabelledNews, ModelVersion
from schemas.retraining import DriftReport, JobRun
from schemas.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A scored story waiting for an analyst, with the exact text the model read (entity offsets refer to it)."""

    news_id: str
    published_at: datetime
    source: str
    headline: str
    text: str
    sentiment: str
    confidence: float
    probs: tuple[float, float, float]
    entities: list[dict[str, Any]]
    model_version: str


@dataclass(frozen=True, slots=True)
class Awaiting:
    """Labels newer than the champion's training data (they reach the model at the next retraining)."""

    count: int
    champion: str | None
    trained_until_label_id: int | None


def model_text(row: News, body_max_chars: int) -> str:
    """The text the consumer scored for ``row`` (``NewsIn.model_text``; the row holds the same fields)."""
    news = NewsIn.model_construct(id=row.id, source=row.source, published_at=row.published_at,
                                  headline=row.headline, body=row.body)
    return news.model_text(body_max_chars)


def _unlabelled_recent(days: float) -> Any:
    labelled = select(LabelledNews.id).where(col(LabelledNews.news_id) == col(News.id))
    return (col(News.scored_at) >= utcnow() - timedelta(days=days), col(News.duplicate_of).is_(None),
            ~labelled.exists())


def labelling_queue(engine: Engine, days: float, limit: int, body_max_chars: int,
                    skip: tuple[str, ...] = ()) -> list[QueueItem]:
    """Unlabelled, non-duplicate stories of the last ``days``, least confident first (most to learn from)."""
    query = select(News).where(*_unlabelled_recent(days))
    if skip:
        query = query.where(col(News.id).not_in(skip))
    with Session(engine) as session:
        rows = session.exec(
            query.order_by(col(News.confidence), col(News.published_at).desc(), col(News.id)).limit(limit)
        ).all()
        return [
            QueueItem(news_id=row.id, published_at=row.published_at, source=row.source, headline=row.headline,
                      text=model_text(row, body_max_chars), sentiment=row.sentiment, confidence=row.confidence,
                      probs=(row.p_negative, row.p_neutral, row.p_positive), entities=list(row.entities),
                      model_version=row.model_version)
            for row in rows
        ]


def queue_size(engine: Engine, days: float) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(News).where(*_unlabelled_recent(days))).one())


def labels_awaiting(engine: Engine) -> Awaiting:
    with Session(engine) as session:
        champion = session.exec(
            select(ModelVersion).where(ModelVersion.status == "champion")
            .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())
        ).first()
        since = champion.trained_until_label_id if champion is not None else None
        query = select(func.count()).select_from(LabelledNews)
        if since is not None:
            query = query.where(col(LabelledNews.id) > since)
        count = int(session.exec(query).one())
    return Awaiting(count=count, champion=champion.version if champion else None, trained_until_label_id=since)


def model_versions(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The registry, newest first, as plain dicts (metrics, train_args and gate included)."""
    with Session(engine) as session:
        rows = session.exec(
            select(ModelVersion).order_by(col(ModelVersion.created_at).desc(), col(ModelVersion.id).desc())
            .limit(limit)
        ).all()
        return [row.model_dump() for row in rows]


def serving_consumers(engine: Engine, stale_after_s: float) -> list[dict[str, Any]]:
    """Consumers that reported within ``stale_after_s``: the model version each one actually serves (that of its
    newest batch), its health status and detail, newest report first."""
    with Session(engine) as session:
        rows = session.exec(
            select(ConsumerHeartbeat).where(col(ConsumerHeartbeat.updated_at) >= utcnow() - timedelta(
                seconds=stale_after_s)).order_by(col(ConsumerHeartbeat.updated_at).desc(),
                                                 col(ConsumerHeartbeat.member))
        ).all()
        return [row.model_dump(include={"member", "group_id", "topic", "model_version", "status", "detail",
                                        "updated_at"}) for row in rows]


def job_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The newest retraining and drift runs (``job_run``), as plain dicts."""
    with Session(engine) as session:
        rows = session.exec(select(JobRun).order_by(col(JobRun.started_at).desc(), col(JobRun.id).desc())
                            .limit(limit)).all()
        return [row.model_dump(exclude={"details"}) for row in rows]


def drift_reports(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The newest drift checks, as plain dicts without the distributions."""
    with Session(engine) as session:
        rows = session.exec(select(DriftReport).order_by(col(DriftReport.created_at).desc(),
                                                         col(DriftReport.id).desc()).limit(limit)).all()
        return [row.model_dump(exclude={"reference", "current"}) for row in rows]
