"""Late data: the new trailing baselines of an entity's later buckets when a batch adds to an older bucket.

A bucket's ``zscore``, ``volume_ratio``, ``ewma_score`` and ``baseline_count`` are computed when it is written,
from the entity's non-empty buckets in ``[start - baseline, start)`` and the EWMA of the newest of them. A batch
that adds to a bucket older than the entity's newest (a late story, a lagging consumer, a near-duplicate that
changed role) changes those baselines, so without a refresh the stored values would depend on arrival order.
:func:`stale_buckets` recomputes the later buckets in bucket order with the incremental path's formulas
(:mod:`monitor.signals.math`), the EWMA chaining through them, and returns the baselines of those whose values
change; the writer rewrites just those, in its (bucket start, entity) lock order.

Cost: an in-order batch pays one query (:func:`late_entities`). A late entity costs two more reads that return its
buckets from the late one to its newest and as many at the start of their baselines; the database sums the rest
of the baselines. A story late by a whole baseline reads the entity's buckets over a baseline and a half or more.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlmodel import Session

from monitor.core.settings import Settings
from monitor.signals.math import Baseline, Increment, ewma, mean_or_none, volume_ratio, zscore
from schemas.signals import EntitySignal

log = logging.getLogger(__name__)

_SIGNALS: Table = EntitySignal.__table__  # type: ignore[attr-defined]
_KEYS_PER_QUERY = 1000  # far below every database's bind-parameter limit
_LATE_PER_QUERY = 200  # one OR term (four or five parameters) per late entity
_SAME = 1e-12  # relative: a difference of float rounding alone is no change worth a write

Derived = tuple[float | None, float | None, float | None, int | None]  # zscore, volume_ratio, ewma, baseline_count


@dataclass(slots=True)
class _Bucket:
    """A bucket as the baselines see it, or a summary of a span of buckets that every later baseline holds whole."""

    start: datetime  # a summary's: its first non-empty bucket
    count: int
    mean: float | None
    ewma: float | None
    buckets: int = 1
    mean_sum: float = 0.0
    mean_sq_sum: float = 0.0
    stored: Derived | None = None  # the derived columns as stored; None: not to be rewritten
    touched: bool = False  # the batch adds to it: the writer's upsert computes it

    @classmethod
    def of(cls, start: datetime, count: int, mean: float | None, ewma_score: float | None,
           stored: Derived | None = None, touched: bool = False) -> _Bucket:
        m = 0.0 if mean is None else mean  # SUM() skips NULL
        return cls(start, count, mean, ewma_score, 1, m, m * m, stored, touched)



def baseline_columns(c: Any) -> list[Any]:
    """Per entity, over its selected baseline buckets: the window-function sums :meth:`Baseline.from_sums` takes,
    and the EWMA of its newest bucket (what :meth:`BucketHistory.baseline` sums in Python for the writer)."""
    return [
        c.entity, c.ewma_score,
        func.sum(c.count).over(partition_by=c.entity).label("stories"),
        func.count().over(partition_by=c.entity).label("buckets"),
        func.sum(c.mean_sentiment).over(partition_by=c.entity).label("mean_sum"),
        func.sum(c.mean_sentiment * c.mean_sentiment).over(partition_by=c.entity).label("mean_sq_sum"),
        func.min(c.bucket_start).over(partition_by=c.entity).label("first_start"),
        func.row_number().over(partition_by=c.entity, order_by=c.bucket_start.desc()).label("newest"),
    ]

def aware(value: Any) -> datetime:
    """A datetime from the database as aware UTC: an expression's value comes back without the column's type (a
    naive string on SQLite)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def late_entities(session: Session, touched: Mapping[str, set[datetime]], width_s: int) -> dict[str, datetime]:
    """One query per 1000 keys: {entity: its newest stored bucket that is later than the entity's earliest touched
    bucket and not touched itself}, for the entities that have one. An in-order batch finds none."""
    c = _SIGNALS.c
    late: dict[str, datetime] = {}
    keys = sorted(touched)
    for offset in range(0, len(keys), _KEYS_PER_QUERY):
        by_first: dict[datetime, list[str]] = defaultdict(list)
        for key in keys[offset:offset + _KEYS_PER_QUERY]:
            by_first[min(touched[key])].append(key)
        later = or_(*(and_(c.entity.in_(group), c.bucket_start > first) for first, group in by_first.items()))
        for entity, start in session.execute(select(c.entity, c.bucket_start).where(c.bucket_s == width_s, later)):
            start = aware(start)
            if start not in touched[entity] and (entity not in late or start > late[entity]):
                late[entity] = start
    return late


def _rows(session: Session, spans: dict[str, tuple[datetime, datetime]], increments: Mapping[tuple[str, datetime],
          Increment], width_s: int, window: timedelta) -> dict[str, list[_Bucket]]:
    """Per late entity (first touched L, newest N): the non-empty buckets in [L - baseline, N - baseline), which
    leave the baselines one by one, and every bucket in [L, N] with the batch's sums added."""
    c = _SIGNALS.c
    out: dict[str, list[_Bucket]] = defaultdict(list)
    entities = sorted(spans)
    for offset in range(0, len(entities), _LATE_PER_QUERY):
        terms = [and_(c.entity == e, c.bucket_start >= first - window, c.bucket_start <= newest,
                      or_(and_(c.bucket_start < newest - window, c.count > 0), c.bucket_start >= first))
                 for e in entities[offset:offset + _LATE_PER_QUERY] for first, newest in [spans[e]]]
        for entity, moment, stored_count, weight, score_sum, mean, z, ratio, ewma_score, base_count in session.execute(
            select(c.entity, c.bucket_start, c.count, c.weight_sum, c.weighted_score_sum, c.mean_sentiment,
                   c.zscore, c.volume_ratio, c.ewma_score, c.baseline_count)
            .where(c.bucket_s == width_s, or_(*terms)).order_by(c.entity, c.bucket_start)
        ):
            start = aware(moment)
            inc = increments.get((entity, start))
            if start < spans[entity][0] or inc is None:
                stored = None if start < spans[entity][0] else (z, ratio, ewma_score, base_count)
                out[entity].append(_Bucket.of(start, stored_count, mean, ewma_score, stored))
                continue
            count = stored_count + inc.count
            mean = mean_or_none(score_sum + inc.weighted_score_sum, weight + inc.weight_sum) if count > 0 else None
            out[entity].append(_Bucket.of(start, count, mean, None, touched=True))
    for (entity, start), inc in increments.items():  # buckets the batch creates
        if entity in spans and spans[entity][0] <= start <= spans[entity][1] and not any(
                b.start == start for b in out[entity]):
            out[entity].append(_Bucket.of(start, inc.count, mean_or_none(inc.weighted_score_sum, inc.weight_sum)
                                          if inc.count > 0 else None, None, touched=True))
    return out


def _summaries(session: Session, spans: dict[str, tuple[datetime, datetime]], width_s: int,
               window: timedelta) -> dict[str, _Bucket]:
    """Per late entity whose span is shorter than the baseline: its non-empty buckets in [N - baseline, L), which
    every recomputed baseline holds whole, summed by the database."""
    c = _SIGNALS.c
    out: dict[str, _Bucket] = {}
    short = sorted(e for e, (first, newest) in spans.items() if newest - window < first)
    for offset in range(0, len(short), _LATE_PER_QUERY):
        terms = [and_(c.entity == e, c.bucket_start >= newest - window, c.bucket_start < first)
                 for e in short[offset:offset + _LATE_PER_QUERY] for first, newest in [spans[e]]]
        inner = (
            select(*baseline_columns(c))
            .where(c.bucket_s == width_s, c.count > 0, or_(*terms))
            .subquery()
        )
        for row in session.execute(select(inner).where(inner.c.newest == 1)):
            out[row.entity] = _Bucket(aware(row.first_start), int(row.stories or 0), None, row.ewma_score,
                                      int(row.buckets), float(row.mean_sum or 0), float(row.mean_sq_sum or 0))
    return out


def _prefix(values: Iterable[float]) -> list[float]:
    return [0.0, *itertools.accumulate(values)]


def _same(new: Derived, old: Derived | None) -> bool:
    if old is None:
        return True
    for a, b in zip(new, old, strict=True):
        if (a is None) != (b is None):
            return False
        if a is not None and b is not None and abs(a - b) > _SAME * max(1.0, abs(a), abs(b)):
            return False
    return True


def _refresh(buckets: list[_Bucket], first: datetime, width_s: int, window: timedelta,
             alpha: float) -> dict[datetime, Baseline]:
    """Walk the buckets from ``first`` in order, each baseline from the non-empty buckets in [start - baseline,
    start) (prefix sums) and the EWMA chained from the newest of them; the baselines of the changed ones."""
    nonempty = [b for b in buckets if b.count > 0]
    starts = [b.start for b in nonempty]
    stories, counted = _prefix(b.count for b in nonempty), _prefix(b.buckets for b in nonempty)
    mean_sum, mean_sq_sum = _prefix(b.mean_sum for b in nonempty), _prefix(b.mean_sq_sum for b in nonempty)
    changed: dict[datetime, Baseline] = {}
    for bucket in buckets:
        if bucket.start < first:
            continue
        lo, hi = bisect.bisect_left(starts, bucket.start - window), bisect.bisect_left(starts, bucket.start)
        base = Baseline() if hi <= lo else Baseline.from_sums(
            stories=round(stories[hi] - stories[lo]), buckets=round(counted[hi] - counted[lo]),
            mean_sum=mean_sum[hi] - mean_sum[lo], mean_sq_sum=mean_sq_sum[hi] - mean_sq_sum[lo],
            first_start=starts[lo], previous_ewma=nonempty[hi - 1].ewma, start=bucket.start, width_s=width_s,
            window=window,
        )
        bucket.ewma = ewma(bucket.mean, base.previous_ewma, alpha)
        derived = (zscore(bucket.mean, base), volume_ratio(bucket.count, base), bucket.ewma, base.stories)
        if not bucket.touched and not _same(derived, bucket.stored):
            changed[bucket.start] = base
    return changed


def stale_buckets(session: Session, increments: Mapping[tuple[str, datetime], Increment],
                  settings: Settings) -> dict[tuple[str, datetime], Baseline]:
    """{(entity, start): its new baseline} for the stored buckets this batch does not touch whose derived columns
    change because the batch adds to an earlier bucket of the same entity. Read before the batch's writes."""
    width_s, window = settings.signal_bucket_s, timedelta(days=settings.signal_baseline_days)
    touched: dict[str, set[datetime]] = defaultdict(set)
    for key, start in increments:
        touched[key].add(start)
    newest = late_entities(session, touched, width_s)
    if not newest:
        return {}
    spans = {entity: (min(touched[entity]), last) for entity, last in newest.items()}
    rows, summaries = _rows(session, spans, increments, width_s, window), _summaries(session, spans, width_s, window)
    out: dict[tuple[str, datetime], Baseline] = {}
    for entity, (first, _) in spans.items():
        buckets = sorted(rows[entity], key=lambda b: b.start)
        if entity in summaries:  # between the buckets that leave the baselines and the recomputed ones
            buckets.insert(bisect.bisect_left([b.start for b in buckets], first), summaries[entity])
        for start, base in _refresh(buckets, first, width_s, window, settings.signal_ewma_alpha).items():
            out[(entity, start)] = base
    log.debug("signals: late data in %d entities; %d later buckets to refresh", len(spans), len(out))
    return out
