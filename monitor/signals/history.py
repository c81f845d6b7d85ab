"""The trailing baselines of one batch's buckets from ONE read of the signal table, kept current as it writes.

The writer (:mod:`monitor.signals.buckets`) judges every bucket a batch adds to against the entity's non-empty
buckets in ``[start - baseline, start)``. Asking the database once per bucket start re-read up to a baseline's worth
of buckets each time: a consumer catching up on a backlog covers hours of event time per batch, and with 5-minute
buckets and a 7-day baseline that was 60-odd queries of up to 2,016 rows per batch for a busy entity and the market
(most of the consumer thread's CPU in ``finpulse bench``). Here the buckets of the batch's entities from
``earliest start - baseline`` on are read once; each baseline is then summed in Python, and each
bucket the writer writes is folded back in with the values the upsert gives it, so a later bucket's baseline still
includes an earlier one written (or rewritten) by the same batch.

The read has no upper bound: an entity's buckets later than the batch's are exactly what late data must refresh
(:mod:`monitor.signals.recompute` works from this same read), and an in-order batch finds none. Entities are read in
groups whose earliest buckets lie within half a baseline of each other, so one story a month late makes only its
own entities read that month.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlmodel import Session

from monitor.signals.math import Baseline, Increment, ewma, mean_or_none
from schemas.signals import EntitySignal

SIGNALS: Table = EntitySignal.__table__  # type: ignore[attr-defined]
_KEYS_PER_QUERY = 1000  # far below every database's bind-parameter limit


Derived = tuple[float | None, float | None, float | None, int | None]  # zscore, volume_ratio, ewma, baseline_count


def aware(value: Any) -> datetime:
    """A datetime from the database as aware UTC: an expression's value comes back without the column's type (a
    naive string on SQLite)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(slots=True)
class Stored:
    """A bucket's columns as the baselines, the upsert and the late-data refresh see them."""

    count: int
    weight_sum: float
    weighted_score_sum: float
    mean: float | None
    ewma: float | None
    derived: Derived | None = None  # as stored; None for a bucket this batch wrote


def added(stored: Stored | None, increment: Increment) -> Stored:
    """A bucket's sums and mean once ``increment`` is added, as the upsert computes them (no EWMA, no derived)."""
    count = (stored.count if stored else 0) + increment.count
    weight = (stored.weight_sum if stored else 0.0) + increment.weight_sum
    score_sum = (stored.weighted_score_sum if stored else 0.0) + increment.weighted_score_sum
    if count <= 0:  # the upsert keeps no float residue in an emptied bucket, so it has no mean
        weight = score_sum = 0.0
    return Stored(count, weight, score_sum, mean_or_none(score_sum, weight), None)


def _groups(firsts: dict[str, datetime], window: timedelta) -> Iterator[tuple[datetime, list[str]]]:
    """(earliest start, entities): at most _KEYS_PER_QUERY entities whose earliest starts lie within half a baseline
    of the group's, so no entity reads more than half a baseline it does not need."""
    low: datetime | None = None
    group: list[str] = []
    for entity in sorted(firsts, key=lambda e: (firsts[e], e)):
        if low is not None and (len(group) >= _KEYS_PER_QUERY or firsts[entity] - low > window / 2):
            yield low, group
            low, group = None, []
        low = firsts[entity] if low is None else low
        group.append(entity)
    if low is not None:
        yield low, group


class BucketHistory:
    """Per entity, its buckets in start order, as stored before the batch plus what the batch wrote so far."""

    def __init__(self, width_s: int, window: timedelta, alpha: float) -> None:
        self.width_s, self.window, self.alpha = width_s, window, alpha
        self._starts: dict[str, list[datetime]] = defaultdict(list)
        self._rows: dict[str, list[Stored]] = defaultdict(list)

    @classmethod
    def load(cls, session: Session, keys: Iterable[tuple[str, datetime]], width_s: int, window: timedelta,
             alpha: float) -> BucketHistory:
        """Read the buckets of the entities in ``keys`` from their earliest start - window on, to the newest."""
        history = cls(width_s, window, alpha)
        firsts: dict[str, datetime] = {}
        for key, start in keys:
            firsts[key] = min(firsts.get(key, start), start)
        c = SIGNALS.c
        for low, group in _groups(firsts, window):
            query = (select(c.entity, c.bucket_start, c.count, c.weight_sum, c.weighted_score_sum, c.mean_sentiment,
                            c.ewma_score, c.zscore, c.volume_ratio, c.baseline_count)
                     .where(c.bucket_s == width_s, c.entity.in_(group), c.bucket_start >= low - window)
                     .order_by(c.entity, c.bucket_start))
            for entity, moment, count, weight, score_sum, mean, ewma_score, z, ratio, base in session.execute(query):
                history._starts[entity].append(aware(moment))
                history._rows[entity].append(Stored(int(count), float(weight or 0.0), float(score_sum or 0.0), mean,
                                                    ewma_score, (z, ratio, ewma_score, base)))
        return history

    def buckets(self, key: str) -> tuple[list[datetime], list[Stored]]:
        """The entity's bucket starts and columns, in start order (as stored plus what the batch wrote so far)."""
        return self._starts.get(key, []), self._rows.get(key, [])

    def baseline(self, key: str, start: datetime) -> Baseline:
        """The entity's non-empty buckets in ``[start - window, start)``, as the writer's SQL summed them."""
        starts, rows = self._starts.get(key, []), self._rows.get(key, [])
        lo, hi = bisect.bisect_left(starts, start - self.window), bisect.bisect_left(starts, start)
        stories = buckets = 0
        mean_sum = mean_sq_sum = 0.0
        first: datetime | None = None
        previous: float | None = None
        for moment, row in zip(starts[lo:hi], rows[lo:hi], strict=True):
            if row.count <= 0:
                continue
            if first is None:
                first = moment
            stories += row.count
            buckets += 1
            if row.mean is not None:  # SQL's SUM skips NULL
                mean_sum += row.mean
                mean_sq_sum += row.mean * row.mean
            previous = row.ewma
        if not buckets:
            return Baseline()
        return Baseline.from_sums(stories=stories, buckets=buckets, mean_sum=mean_sum, mean_sq_sum=mean_sq_sum,
                                  first_start=first, previous_ewma=previous, start=start, width_s=self.width_s,
                                  window=self.window)

    def wrote(self, key: str, start: datetime, increment: Increment, baseline: Baseline) -> None:
        """Fold in the bucket the upsert just wrote: the stored sums plus ``increment``, its mean and EWMA computed
        as the upsert computes them."""
        starts, rows = self._starts[key], self._rows[key]
        at = bisect.bisect_left(starts, start)
        stored = rows[at] if at < len(starts) and starts[at] == start else None
        row = added(stored, increment)
        row.ewma = ewma(row.mean, baseline.previous_ewma, self.alpha)
        if stored is None:
            starts.insert(at, start)
            rows.insert(at, row)
        else:
            rows[at] = row

