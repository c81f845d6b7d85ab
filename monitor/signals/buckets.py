"""Maintains the per-entity signal buckets incrementally, inside the transaction that stores a scored batch.

Per batch: mark near-duplicates, insert the entity mentions, read the entities' buckets over the batch's span and
its baseline once (:mod:`monitor.signals.history`), then per touched bucket, oldest first, add the batch's sums,
judged against the trailing baselines summed from that read, with ONE dialect-aware
``INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count, ...`` that also recomputes the derived
columns from the new totals. The addition is atomic, so two consumers adding to the same bucket never lose an
increment. The news table is never rescanned.

Order independence: a batch that adds to a bucket older than its entity's newest (late data, or a stored story
whose near-duplicate role changed) also rewrites the derived columns of the later buckets that change
(:mod:`monitor.signals.recompute`), in the same pass: every signal row is written in (bucket start, entity) order,
the one lock order of every writer, so two consumers never deadlock on them. So the stored signals depend only on
which stories are stored, whatever their order and batches (up to float rounding).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Table, and_, bindparam, case, cast, delete, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from monitor.core.settings import Settings
from monitor.signals.dedup import Dedup, mark_duplicates
from monitor.signals.history import BucketHistory
from monitor.signals.math import (
    Baseline,
    Increment,
    Observation,
    bucket_start,
    ewma,
    mean_or_none,
    observations,
    volume_ratio,
    zscore,
)
from monitor.signals.recompute import stale_buckets
from schemas.news import News
from schemas.signals import MARKET_KEY, EntitySignal, NewsEntity
from schemas.types import utcnow

log = logging.getLogger(__name__)

SIGNALS: Table = EntitySignal.__table__  # type: ignore[attr-defined]
MENTIONS: Table = NewsEntity.__table__  # type: ignore[attr-defined]
_CHUNK = 1000  # keys per IN (...) list: far below SQLite's 32766 and PostgreSQL's 65535 bind parameters


@dataclass(frozen=True, slots=True)
class BatchSignals:
    """What one batch touched: the buckets per entity and the links of its duplicates."""

    buckets: dict[str, set[datetime]]
    duplicates: dict[str, str]


def row_observations(row: News) -> list[Observation]:
    return observations(row.tickers, row.entities, row.score, row.confidence, row.sentiment)


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"signals support sqlite and postgresql, not {dialect}")


def _upsert_statement(session: Session, alpha: float) -> Any:
    """``INSERT INTO entity_signal ... ON CONFLICT DO UPDATE SET count = count + excluded.count, ...``.

    The database adds the increments under its row lock and computes the derived columns from the new totals in
    the same statement; the trailing baseline (which does not depend on this bucket) arrives as the parameters
    ``b_mu``, ``b_sigma``, ``b_rate`` and ``b_prev``. A new row gets the same values computed in Python
    (:func:`_row_values`). Run as one executemany of this single compiled statement per bucket: a multi-row
    VALUES would be compiled again for every batch size, which costs more than the database work.
    """
    stmt = _insert(session, SIGNALS)
    new, old = stmt.excluded, SIGNALS.c
    weight = old.weight_sum + new.weight_sum
    count = old.count + new.count
    mean = (old.weighted_score_sum + new.weighted_score_sum) / weight
    counted = count > 0  # a bucket emptied by a role change keeps no float residue of the sums it lost

    def sum_of(total: Any) -> Any:
        return case((counted, total), else_=0.0)

    # CAST: PostgreSQL cannot infer the type of a parameter that may be NULL.
    mu, sigma, rate, previous = (cast(bindparam(name), Float) for name in ("b_mu", "b_sigma", "b_rate", "b_prev"))
    return stmt.on_conflict_do_update(
        index_elements=[old.entity, old.bucket_s, old.bucket_start],
        set_={
            "count": count,
            "duplicates": old.duplicates + new.duplicates,
            "negative_count": old.negative_count + new.negative_count,
            "weight_sum": sum_of(weight),
            "weighted_score_sum": sum_of(old.weighted_score_sum + new.weighted_score_sum),
            "weighted_score_sq_sum": sum_of(old.weighted_score_sq_sum + new.weighted_score_sq_sum),
            "mean_sentiment": case((and_(counted, weight > 0), mean), else_=None),
            "negative_share": case((counted, (old.negative_count + new.negative_count) * 1.0 / count), else_=None),
            # NULL baseline parameters (cold start) give NULL, as zscore() and volume_ratio() give None.
            "zscore": case((and_(counted, weight > 0), (mean - mu) / sigma), else_=None),
            "volume_ratio": case((counted, count * 1.0 / rate), else_=None),
            "ewma_score": case(
                (or_(~counted, weight <= 0), previous), (previous.is_(None), mean),
                else_=alpha * mean + (1 - alpha) * previous,
            ),
            "baseline_count": new.baseline_count,
            "updated_at": new.updated_at,
        },
    )


def _row_values(key: str, start: datetime, width_s: int, inc: Increment, baseline: Baseline, alpha: float,
                now: datetime) -> dict[str, Any]:
    mean = mean_or_none(inc.weighted_score_sum, inc.weight_sum)
    return {
        "entity": key, "bucket_s": width_s, "bucket_start": start, "count": inc.count,
        "duplicates": inc.duplicates, "negative_count": inc.negative_count, "weight_sum": inc.weight_sum,
        "weighted_score_sum": inc.weighted_score_sum, "weighted_score_sq_sum": inc.weighted_score_sq_sum,
        "mean_sentiment": mean,
        "negative_share": inc.negative_count / inc.count if inc.count else None,
        "zscore": zscore(mean, baseline), "volume_ratio": volume_ratio(inc.count, baseline),
        "ewma_score": ewma(mean, baseline.previous_ewma, alpha), "baseline_count": baseline.stories,
        "updated_at": now,
        "b_mu": baseline.mu, "b_sigma": baseline.sigma, "b_rate": baseline.rate, "b_prev": baseline.previous_ewma,
    }


def _write_buckets(session: Session, increments: dict[tuple[str, datetime], Increment], settings: Settings) -> None:
    """Per bucket start, oldest first: upsert the buckets the batch adds to, judged against their baselines, together
    with the later buckets whose baselines late data changed (their new baselines come from :func:`stale_buckets`,
    their increment is zero). The baselines come from one read of the entities' buckets (:class:`BucketHistory`)
    that each write is folded into, so a later bucket's baseline includes an earlier bucket written, or rewritten,
    by this same batch."""
    width_s, alpha, now = settings.signal_bucket_s, settings.signal_ewma_alpha, utcnow()
    window = timedelta(days=settings.signal_baseline_days)
    history = BucketHistory.load(session, increments, width_s, window, alpha)
    stale = stale_buckets(history, increments, settings)
    statement = _upsert_statement(session, alpha)
    written_keys = sorted([*increments, *stale])
    by_start: dict[datetime, list[str]] = defaultdict(list)
    for key, start in written_keys:
        by_start[start].append(key)
    for start in sorted(by_start):
        keys = sorted(by_start[start])  # every writer takes the row locks in the same order: no deadlock
        for offset in range(0, len(keys), _CHUNK):
            chunk = keys[offset:offset + _CHUNK]
            written = [(key, increments.get((key, start)) or Increment(),
                        stale.get((key, start)) or history.baseline(key, start)) for key in chunk]
            session.execute(statement, [_row_values(key, start, width_s, increment, baseline, alpha, now)
                                        for key, increment, baseline in written])
            for key, increment, baseline in written:
                history.wrote(key, start, increment, baseline)


def _count_flips(session: Session, dedup: Dedup, increments: dict[tuple[str, datetime], Increment],
                 width_s: int) -> list[dict[str, Any]]:
    """Move the stored stories whose role the batch changed between the sums and ``duplicates``; drop the
    mentions of the demoted ones and return those of the promoted ones."""
    demoted = sorted(flip.news_id for flip in dedup.flips if flip.to_duplicate)
    for offset in range(0, len(demoted), _CHUNK):
        session.execute(delete(MENTIONS).where(MENTIONS.c.news_id.in_(demoted[offset:offset + _CHUNK])))
    mentions: list[dict[str, Any]] = []
    for flip in dedup.flips:
        start = bucket_start(flip.published_at, width_s)
        for obs in flip.observations:
            increments[(obs.key, start)].flip(obs, flip.to_duplicate)
            if not flip.to_duplicate and obs.key != MARKET_KEY:
                mentions.append(_mention(flip.news_id, flip.published_at, obs))
    return mentions


def _mention(news_id: str, published_at: datetime, obs: Observation) -> dict[str, Any]:
    return {"news_id": news_id, "entity": obs.key, "published_at": published_at, "score": obs.score,
            "confidence": obs.confidence, "negative": obs.negative}


def record_batch(session: Session, rows: Sequence[News], settings: Settings) -> BatchSignals:
    """Dedup ``rows`` (newly inserted news) and add them to the signals, in the caller's transaction."""
    if not rows:
        return BatchSignals({}, {})
    dedup = mark_duplicates(session, rows, settings.dedup_window_s)
    width_s = settings.signal_bucket_s
    increments: dict[tuple[str, datetime], Increment] = defaultdict(Increment)
    mentions = _count_flips(session, dedup, increments, width_s)
    for row in rows:
        start = bucket_start(row.published_at, width_s)
        duplicate = row.id in dedup.links
        for obs in row_observations(row):
            increments[(obs.key, start)].add(obs, duplicate)
            if not duplicate and obs.key != MARKET_KEY:
                mentions.append(_mention(row.id, row.published_at, obs))
    if mentions:
        session.execute(_insert(session, MENTIONS).on_conflict_do_nothing(),
                        sorted(mentions, key=lambda m: (m["news_id"], m["entity"])))
    _write_buckets(session, increments, settings)
    by_entity: dict[str, set[datetime]] = defaultdict(set)
    for key, start in increments:
        by_entity[key].add(start)
    log.debug("signals: %d stories (%d duplicates, %d stored stories changed role) -> %d buckets", len(rows),
              len(dedup.links), len(dedup.flips), len(increments))
    return BatchSignals(dict(by_entity), dedup.links)


class SignalWriter:
    """The sink's signal stage: :func:`record_batch` inside the sink's transaction, so a crash never counts a story
    twice or loses one (the re-read batch inserts nothing new, and the signals see only newly inserted rows)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def record(self, session: Session, rows: Sequence[News]) -> None:
        record_batch(session, rows, self.settings)
