"""The arithmetic of risk signals, free of any database: what a story contributes and how a bucket is judged.

The formulas here are the ones the README's "Signals" section documents; the signal writer
(:mod:`monitor.signals.buckets`) and the tests' from-scratch reference both follow them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.signals import MARKET_KEY, entity_key

log = logging.getLogger(__name__)

SIGMA_FLOOR = 0.05  # a baseline whose bucket means barely vary would turn noise into huge z-scores
MIN_BASELINE_BUCKETS = 3  # fewer non-empty baseline buckets: no z-score (cold start)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one story says about one entity (or the market)."""

    key: str
    score: float  # P(positive) - P(negative)
    confidence: float  # the weight of the story in the mean
    negative: bool


@dataclass(slots=True)
class Increment:
    """The sums one batch adds to one (entity, bucket)."""

    count: int = 0
    duplicates: int = 0
    negative_count: int = 0
    weight_sum: float = 0.0
    weighted_score_sum: float = 0.0
    weighted_score_sq_sum: float = 0.0

    def add(self, observation: Observation, duplicate: bool) -> None:
        if duplicate:
            self.duplicates += 1
            return
        self.count += 1
        self.negative_count += int(observation.negative)
        self.weight_sum += observation.confidence
        self.weighted_score_sum += observation.confidence * observation.score
        self.weighted_score_sq_sum += observation.confidence * observation.score * observation.score

    def flip(self, observation: Observation, to_duplicate: bool) -> None:
        """Move a stored story between the counted sums and ``duplicates`` (an earlier copy arrived late, or the
        copy it duplicated stopped being an original)."""
        sign = -1 if to_duplicate else 1
        self.duplicates -= sign
        self.count += sign
        self.negative_count += sign * int(observation.negative)
        self.weight_sum += sign * observation.confidence
        self.weighted_score_sum += sign * observation.confidence * observation.score
        self.weighted_score_sq_sum += sign * observation.confidence * observation.score * observation.score


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the trailing buckets of one entity say before the bucket being judged.

    Computed from the signal table's own buckets with ``count > 0`` in ``[start - baseline, start)``.
    """

    stories: int = 0  # sum of their counts
    mu: float | None = None  # mean of their bucket means (None: too few buckets for a z-score)
    sigma: float | None = None  # standard deviation of their bucket means, floored at SIGMA_FLOOR
    rate: float | None = None  # stories per bucket slot since the entity's first baseline bucket
    previous_ewma: float | None = None  # EWMA of the newest of them

    @classmethod
    def from_sums(cls, *, stories: int, buckets: int, mean_sum: float, mean_sq_sum: float,
                  first_start: datetime | None, previous_ewma: float | None, start: datetime, width_s: int,
                  window: timedelta) -> Baseline:
        mu = sigma = rate = None
        if buckets >= MIN_BASELINE_BUCKETS:
            mu = mean_sum / buckets
            sigma = max(math.sqrt(max(mean_sq_sum / buckets - mu * mu, 0.0)), SIGMA_FLOOR)
        if stories > 0 and first_start is not None:
            # Empty slots count as zero volume; counting slots from the entity's first bucket keeps a young
            # entity (or a fresh database) from being compared with a week of silence it was never observed in.
            since = max(start - window, first_start)
            rate = stories / max(1, round((start - since).total_seconds() / width_s))
        return cls(stories, mu, sigma, rate, previous_ewma)


def bucket_start(moment: datetime, width_s: int) -> datetime:
    """The start of the ``width_s``-second bucket holding ``moment`` (aligned to the Unix epoch)."""
    seconds = math.floor(moment.timestamp() / width_s) * width_s
    return datetime.fromtimestamp(seconds, UTC)


def _float(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def observations(
    tickers: Iterable[str], entities: Iterable[dict[str, Any]], score: float, confidence: float, sentiment: str
) -> list[Observation]:
    """One observation per distinct entity key of a story, plus the market (``*``).

    An entity mentioned twice counts once, with its most confident mention. The story's ``tickers`` that the
    model did not tag stand in as TICKER entities with the document's sentiment (until per-entity sentiment
    exists everywhere, the document score is the best estimate for them).
    """
    doc_negative = sentiment == "negative"
    best: dict[str, Observation] = {}
    for entity in entities:
        key = entity_key(str(entity.get("type", "")), str(entity.get("text", "")))
        if key is None:
            continue
        e_score = _float(entity.get("score"), score)
        e_conf = _float(entity.get("confidence"), confidence)
        e_negative = str(entity.get("sentiment", sentiment)) == "negative"
        if key not in best or e_conf > best[key].confidence:
            best[key] = Observation(key, e_score, e_conf, e_negative)
    for ticker in tickers:
        key = entity_key("TICKER", ticker)
        if key is not None and key not in best:
            best[key] = Observation(key, score, confidence, doc_negative)
    return [Observation(MARKET_KEY, score, confidence, doc_negative), *best.values()]


def mean_or_none(weighted_score_sum: float, weight_sum: float) -> float | None:
    return weighted_score_sum / weight_sum if weight_sum > 0 else None


def zscore(mean: float | None, baseline: Baseline) -> float | None:
    """(bucket mean - mean of the baseline's bucket means) / their standard deviation (floored)."""
    if mean is None or baseline.mu is None or baseline.sigma is None:
        return None
    return (mean - baseline.mu) / baseline.sigma


def volume_ratio(count: int, baseline: Baseline) -> float | None:
    """count / (baseline stories per bucket slot)."""
    if count <= 0 or baseline.rate is None:
        return None
    return count / baseline.rate


def ewma(mean: float | None, previous: float | None, alpha: float) -> float | None:
    """alpha * this bucket's mean + (1 - alpha) * the EWMA of the entity's previous non-empty bucket."""
    if mean is None:
        return previous
    if previous is None:
        return mean
    return alpha * mean + (1 - alpha) * previous
