"""An entity's recent history in memory, so that a range of evaluation steps costs a few queries, not one per step.

:func:`load_histories` reads, for a span of event time, every distinct story mention (per entity, and the
market's stories) and the signal buckets behind the baselines. :meth:`EntityHistory.metrics` then computes a
rule's window at any step with binary searches over prefix sums. Everything it reads is a sum or a story, so the
result depends only on which stories are stored, never on the order or the batches they came in.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitor.alerts.metrics import WindowMetrics
from monitor.alerts.stats import MIN_EXPOSURE_WINDOWS, BaselineSums, sentiment, volume
from monitor.signals.history import aware
from schemas.alerts import LEGACY_METRICS
from schemas.news import News
from schemas.signals import MARKET_KEY, EntitySignal, NewsEntity

log = logging.getLogger(__name__)


class Bucket(NamedTuple):
    """The columns of one signal bucket the alert metrics read (plain tuples: ORM objects cost 5x more)."""

    stories: int  # the column ``count`` (a NamedTuple cannot have a field named count)
    weight_sum: float
    weighted_score_sum: float
    weighted_score_sq_sum: float
    mean_sentiment: float | None
    zscore: float | None
    volume_ratio: float | None
    ewma_score: float | None


def _prefix(values: Iterable[float]) -> list[float]:
    return [0.0, *itertools.accumulate(values)]


@dataclass
class EntityHistory:
    """One entity's mentions (sorted by time) and signal buckets (sorted by start), as prefix sums."""

    key: str
    width_s: int
    baseline_s: float
    times: list[float] = field(default_factory=list)
    mentions: list[tuple[float, float, bool]] = field(default_factory=list)  # (score, confidence, negative)
    starts: list[float] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    first_seen: float | None = None  # start of its first non-empty bucket ever

    def freeze(self) -> None:
        """Build the prefix sums (once all rows are in)."""
        m, b = self.mentions, self.buckets
        self._w = _prefix(c for _, c, _ in m)
        self._w2 = _prefix(c * c for _, c, _ in m)
        self._ws = _prefix(c * s for s, c, _ in m)
        self._neg = _prefix(float(n) for _, _, n in m)
        self._count = _prefix(float(r.stories) for r in b)
        self._count_sq = _prefix(float(r.stories) ** 2 for r in b)
        self._bw = _prefix(r.weight_sum for r in b)
        self._bws = _prefix(r.weighted_score_sum for r in b)
        self._bws2 = _prefix(r.weighted_score_sq_sum for r in b)
        self._nonempty = _prefix(1.0 if r.stories > 0 and r.mean_sentiment is not None else 0.0 for r in b)
        self._mean = _prefix(r.mean_sentiment or 0.0 for r in b)
        self._mean_sq = _prefix((r.mean_sentiment or 0.0) ** 2 for r in b)
        self._inv = _prefix(1.0 / r.stories if r.stories > 0 and r.mean_sentiment is not None else 0.0 for r in b)

    def stories_between(self, start: float, end: float) -> int:
        """Mentions in (start, end]."""
        return bisect.bisect_right(self.times, end) - bisect.bisect_right(self.times, start)

    def baseline(self, window_start: float, origin: float | None = None) -> BaselineSums:
        """Sums of the buckets in [a - baseline, a), a = the start of the bucket holding ``window_start``: whole
        buckets that end before the window begins. Their exposure runs from ``origin`` (when the system stored its
        first story; default: this entity's first bucket), at most the baseline length."""
        a = window_start - window_start % self.width_s
        lo = bisect.bisect_left(self.starts, a - self.baseline_s)
        hi = bisect.bisect_left(self.starts, a)
        since = origin if origin is not None else self.first_seen
        first = min(a, max(a - self.baseline_s, since if since is not None else a))
        if hi <= lo:
            return BaselineSums(exposure_s=max(0.0, a - first))
        return BaselineSums(
            exposure_s=a - first, stories=int(self._count[hi] - self._count[lo]),
            count_sq_sum=self._count_sq[hi] - self._count_sq[lo], weight=self._bw[hi] - self._bw[lo],
            score_sum=self._bws[hi] - self._bws[lo], score_sq_sum=self._bws2[hi] - self._bws2[lo],
            buckets=int(self._nonempty[hi] - self._nonempty[lo]), mean_sum=self._mean[hi] - self._mean[lo],
            mean_sq_sum=self._mean_sq[hi] - self._mean_sq[lo], inverse_count_sum=self._inv[hi] - self._inv[lo],
        )

    def metrics(self, at: float, window_s: float, comparator: str, market: EntityHistory | None) -> WindowMetrics:
        """Every metric of the window (at - window_s, at]."""
        start = at - window_s
        lo, hi = bisect.bisect_right(self.times, start), bisect.bisect_right(self.times, at)
        count = hi - lo
        weight, weight_sq = self._w[hi] - self._w[lo], self._w2[hi] - self._w2[lo]
        score_sum = self._ws[hi] - self._ws[lo]
        origin = market.first_seen if market is not None and market.first_seen is not None else self.first_seen
        base = self.baseline(start, origin)
        market_base = market.baseline(start) if market is not None and market is not self else None
        vol = volume(count, window_s, base, self.width_s)
        sent = sentiment(weight, weight_sq, score_sum, base, market_base)
        legacy = self._legacy(start, at, comparator)
        return WindowMetrics(
            start=_moment(start), end=_moment(at), buckets=len({int(t // self.width_s) for t in self.times[lo:hi]}),
            count=count, duplicates=0,
            mean_sentiment=score_sum / weight if weight > 0 else None,
            negative_share=(self._neg[hi] - self._neg[lo]) / count if count else None,
            volume_surprise=vol.surprise if base.exposure_s >= MIN_EXPOSURE_WINDOWS * window_s else None,
            expected_count=vol.expected, sentiment_z=sent.z, sentiment_shrunk=sent.shrunk,
            baseline_mean=sent.baseline_mean, baseline_sd=sent.baseline_sd,
            zscore=legacy["zscore"], volume_ratio=legacy["volume_ratio"], ewma_score=legacy["ewma_score"],
        )

    def _legacy(self, start: float, at: float, comparator: str) -> dict[str, float | None]:
        """The stored per-bucket values: the most extreme bucket in the rule's direction, among the buckets that
        start in the window and have ended by ``at`` (a bucket still open holds stories later than ``at``)."""
        lo, hi = bisect.bisect_right(self.starts, start), bisect.bisect_right(self.starts, at - self.width_s)
        rows = [r for r in self.buckets[lo:hi] if r.stories > 0]
        pick = min if comparator in ("<", "<=") else max
        out: dict[str, float | None] = {}
        for name in LEGACY_METRICS:
            values = [float(v) for r in rows if (v := getattr(r, name)) is not None]
            out[name] = pick(values) if values else None
        return out


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def load_histories(session: Session, start: datetime, end: datetime, max_window_s: float, width_s: int,
                   baseline_s: float, keys: Iterable[str] = ()) -> dict[str, EntityHistory]:
    """Histories of every entity mentioned in (start - max_window, end], of ``keys``, and of the market.

    Mentions are read for the windows; buckets from a baseline before the earliest window start.
    """
    first = start.timestamp() - max_window_s
    since = _moment(first)
    histories: dict[str, EntityHistory] = {}

    def history(key: str) -> EntityHistory:
        if key not in histories:
            histories[key] = EntityHistory(key, width_s, baseline_s)
        return histories[key]

    mentions = session.execute(
        select(col(NewsEntity.entity), col(NewsEntity.published_at), col(NewsEntity.score),
               col(NewsEntity.confidence), col(NewsEntity.negative), col(NewsEntity.news_id))
        .where(col(NewsEntity.published_at) > since, col(NewsEntity.published_at) <= end)
        .order_by(col(NewsEntity.entity), col(NewsEntity.published_at), col(NewsEntity.news_id))
    ).all()
    for entity, published, score, confidence, negative, _ in mentions:
        h = history(entity)
        h.times.append(_seconds(published))
        h.mentions.append((float(score), float(confidence), bool(negative)))
    market = history(MARKET_KEY)
    for published, score, confidence, sentiment_label, _ in session.execute(
        select(col(News.published_at), col(News.score), col(News.confidence), col(News.sentiment), col(News.id))
        .where(col(News.duplicate_of).is_(None), col(News.published_at) > since, col(News.published_at) <= end)
        .order_by(col(News.published_at), col(News.id))
    ).all():
        market.times.append(_seconds(published))
        market.mentions.append((float(score), float(confidence), sentiment_label == "negative"))
    for key in keys:
        history(key)
    _load_buckets(session, histories, _moment(first - baseline_s - width_s), end, width_s)
    for h in histories.values():
        h.freeze()
    return histories


def _load_buckets(session: Session, histories: dict[str, EntityHistory], since: datetime, end: datetime,
                  width_s: int) -> None:
    keys = sorted(histories)
    by_key: dict[str, list[tuple[float, Bucket]]] = defaultdict(list)
    c = EntitySignal.__table__.c  # type: ignore[attr-defined]
    for offset in range(0, len(keys), 1000):  # far below every database's bind-parameter limit
        chunk = keys[offset:offset + 1000]
        for entity, start, *values in session.execute(
            select(c.entity, c.bucket_start, c["count"], *(c[name] for name in Bucket._fields[1:])).where(
                c.entity.in_(chunk), c.bucket_s == width_s, c.bucket_start >= since, c.bucket_start <= end,
            ).order_by(c.entity, c.bucket_start)
        ):
            by_key[entity].append((_seconds(start), Bucket(*values)))
        for entity, first in session.execute(
            select(col(EntitySignal.entity), func.min(col(EntitySignal.bucket_start)))
            .where(col(EntitySignal.entity).in_(chunk), col(EntitySignal.bucket_s) == width_s,
                   col(EntitySignal.count) > 0)
            .group_by(col(EntitySignal.entity))
        ).all():
            histories[entity].first_seen = aware(first).timestamp()  # MIN(): a naive string on SQLite
    for key, rows in by_key.items():
        histories[key].starts = [start for start, _ in rows]
        histories[key].buckets = [bucket for _, bucket in rows]
