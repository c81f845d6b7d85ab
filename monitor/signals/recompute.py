"""Late data: the new trailing baselines of an entity's later buckets when a batch adds to an older bucket.

A bucket's ``zscore``, ``volume_ratio``, ``ewma_score`` and ``baseline_count`` are computed when it is written,
from the entity's non-empty buckets in ``[start - baseline, start)`` and the EWMA of the newest of them. A batch
that adds to a bucket older than the entity's newest (a late story, a lagging consumer, a near-duplicate that
changed role) changes those baselines, so without a refresh the stored values would depend on arrival order.
:func:`stale_buckets` recomputes the later buckets in bucket order with the incremental path's formulas
(:mod:`monitor.signals.math`), the EWMA chaining through them, and returns the baselines of those whose values
change; the writer rewrites just those, in its (bucket start, entity) lock order.

Cost: no query of its own. It works from the writer's one read of the batch's entities
(:class:`~monitor.signals.history.BucketHistory`), which reaches from each entity's earliest touched bucket minus a
baseline to its newest bucket; an in-order batch finds nothing later to refresh. A story late by a whole baseline
walks the entity's buckets over a baseline and a half or more.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.core.settings import Settings
from monitor.signals.history import BucketHistory, Derived, added
from monitor.signals.math import Baseline, Increment, ewma, volume_ratio, zscore

log = logging.getLogger(__name__)

_SAME = 1e-12  # relative: a difference of float rounding alone is no change worth a write


@dataclass(slots=True)
class _Bucket:
    """A bucket as the baselines see it."""

    start: datetime
    count: int
    mean: float | None
    ewma: float | None
    mean_sum: float = 0.0
    mean_sq_sum: float = 0.0
    stored: Derived | None = None  # the derived columns as stored; None: not to be rewritten
    touched: bool = False  # the batch adds to it: the writer's upsert computes it

    @classmethod
    def of(cls, start: datetime, count: int, mean: float | None, ewma_score: float | None,
           stored: Derived | None = None, touched: bool = False) -> _Bucket:
        m = 0.0 if mean is None else mean  # SUM() skips NULL
        return cls(start, count, mean, ewma_score, m, m * m, stored, touched)


def _late_buckets(history: BucketHistory, entity: str, touched: set[datetime],
                  increments: Mapping[tuple[str, datetime], Increment], window: timedelta) -> list[_Bucket]:
    """The entity's buckets the refresh walks, in start order, or [] when none is late: with L its earliest touched
    bucket and N its newest stored bucket after L that the batch does not touch, the buckets in [L - baseline, L)
    as stored and every bucket in [L, N] with the batch's sums added (those the batch creates included)."""
    first = min(touched)
    starts, rows = history.buckets(entity)
    at = bisect.bisect_right(starts, first)
    newest = next((start for start in reversed(starts[at:]) if start not in touched), None)
    if newest is None:
        return []
    out: list[_Bucket] = []
    lo, hi = bisect.bisect_left(starts, first - window), bisect.bisect_right(starts, newest)
    for start, row in zip(starts[lo:hi], rows[lo:hi], strict=True):
        inc = increments.get((entity, start))
        if start < first or inc is None:
            stored = None if start < first else row.derived
            out.append(_Bucket.of(start, row.count, row.mean, row.ewma, stored))
            continue
        summed = added(row, inc)
        out.append(_Bucket.of(start, summed.count, summed.mean, None, touched=True))
    known = set(starts[lo:hi])  # every touched bucket up to N lies in [L - baseline, N]
    for start in sorted(touched):  # buckets the batch creates
        if start <= newest and start not in known:
            summed = added(None, increments[(entity, start)])
            out.append(_Bucket.of(start, summed.count, summed.mean, None, touched=True))
    return sorted(out, key=lambda bucket: bucket.start)


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
    stories = _prefix(b.count for b in nonempty)
    mean_sum, mean_sq_sum = _prefix(b.mean_sum for b in nonempty), _prefix(b.mean_sq_sum for b in nonempty)
    changed: dict[datetime, Baseline] = {}
    for bucket in buckets:
        if bucket.start < first:
            continue
        lo, hi = bisect.bisect_left(starts, bucket.start - window), bisect.bisect_left(starts, bucket.start)
        base = Baseline() if hi <= lo else Baseline.from_sums(
            stories=round(stories[hi] - stories[lo]), buckets=hi - lo,
            mean_sum=mean_sum[hi] - mean_sum[lo], mean_sq_sum=mean_sq_sum[hi] - mean_sq_sum[lo],
            first_start=starts[lo], previous_ewma=nonempty[hi - 1].ewma, start=bucket.start, width_s=width_s,
            window=window,
        )
        bucket.ewma = ewma(bucket.mean, base.previous_ewma, alpha)
        derived = (zscore(bucket.mean, base), volume_ratio(bucket.count, base), bucket.ewma, base.stories)
        if not bucket.touched and not _same(derived, bucket.stored):
            changed[bucket.start] = base
    return changed


def stale_buckets(history: BucketHistory, increments: Mapping[tuple[str, datetime], Increment],
                  settings: Settings) -> dict[tuple[str, datetime], Baseline]:
    """{(entity, start): its new baseline} for the stored buckets this batch does not touch whose derived columns
    change because the batch adds to an earlier bucket of the same entity. From ``history`` as read, before the
    batch's writes are folded into it."""
    width_s, window = settings.signal_bucket_s, timedelta(days=settings.signal_baseline_days)
    touched: dict[str, set[datetime]] = defaultdict(set)
    for key, start in increments:
        touched[key].add(start)
    out: dict[tuple[str, datetime], Baseline] = {}
    late = 0
    for entity, starts in touched.items():
        buckets = _late_buckets(history, entity, starts, increments, window)
        if not buckets:
            continue
        late += 1
        for start, base in _refresh(buckets, min(starts), width_s, window, settings.signal_ewma_alpha).items():
            out[(entity, start)] = base
    if late:
        log.debug("signals: late data in %d entities; %d later buckets to refresh", late, len(out))
    return out
