"""The statistics behind the alert metrics, free of any database: how surprising a window's volume is, and how far
its sentiment sits from the entity's normal once its sample size is taken into account.

Every formula is documented, with the reasons, in the README's "Alert statistics" section; the tests check them
against scipy's distributions and against the properties a risk desk relies on (one story never moves an entity
as far as fifty; a quiet entity's first mention is no surprise; a window's surprise grows with its count).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from scipy.special import betainc

log = logging.getLogger(__name__)

# Gamma prior on an entity's story rate: RATE_PRIOR_STORIES stories in RATE_PRIOR_S seconds. Weak on purpose:
# the evidence that an entity is rare is the time the *system* has watched without seeing it (the baseline's
# exposure counts from the first story stored, not from the entity's first), never a prior belief.
RATE_PRIOR_STORIES = 0.5
RATE_PRIOR_S = 3_600.0
# Cold start: no volume verdict until the system has watched this many windows' worth of time.
MIN_EXPOSURE_WINDOWS = 4
# News arrives in clusters (one event, several stories). Without enough history to measure an entity's own
# clustering, counts are judged as if every DEFAULT_DISPERSION stories were one independent event. Measured on
# StockNet (85 tickers with >= 10 stories in a week, 5-minute buckets): median 1.0, 75th percentile 1.03; 2 keeps
# a margin for clustering over longer spans than a bucket.
DEFAULT_DISPERSION = 2.0
MAX_DISPERSION = 20.0
MIN_SLOTS_FOR_DISPERSION = 24  # baseline slots needed to measure an entity's own dispersion
MIN_STORIES_FOR_DISPERSION = 10
MAX_SURPRISE = 300.0  # -log10 of the smallest p-value reported (a float's tail underflows beyond)
# Empirical-Bayes pooling: an entity's baseline sentiment is pulled toward the market's by this much story weight,
# so a young entity is judged against the market until its own history outweighs it.
POOL_WEIGHT = 10.0
MARKET_PRIOR_MEAN = 0.0
MARKET_PRIOR_VAR = 0.25  # per-story variance of scores in [-1, 1] when even the market has no history
MIN_STORY_SD = 0.1
MIN_BETWEEN_VAR = 0.01  # between-window variance floor: the shrinkage never exceeds sigma^2 / 0.01 stories


@dataclass(frozen=True, slots=True)
class BaselineSums:
    """An entity's history before a window, as sums over its signal buckets (each of ``width_s`` seconds)."""

    exposure_s: float = 0.0  # seconds of history (from its first bucket, at most the baseline length)
    stories: int = 0
    count_sq_sum: float = 0.0  # sum over buckets of count^2 (dispersion)
    weight: float = 0.0  # sum of confidences
    score_sum: float = 0.0  # sum of confidence * score
    score_sq_sum: float = 0.0  # sum of confidence * score^2
    buckets: int = 0  # non-empty buckets
    mean_sum: float = 0.0  # sum of the buckets' mean scores
    mean_sq_sum: float = 0.0  # sum of their squares
    inverse_count_sum: float = 0.0  # sum of 1 / count


@dataclass(frozen=True, slots=True)
class Volume:
    surprise: float  # -log10 P(at least this many stories | history, or the prior alone)
    expected: float | None  # stories the history predicts for the window
    dispersion: float


@dataclass(frozen=True, slots=True)
class Sentiment:
    z: float | None  # (window mean - baseline mean) / (sd / sqrt(n_eff))
    shrunk: float | None  # the window mean pulled toward the baseline mean by its uncertainty
    baseline_mean: float
    baseline_sd: float


def dispersion(base: BaselineSums, width_s: float) -> float:
    """Variance-to-mean ratio of the entity's bucket counts (empty buckets included), clamped to [1, 20]; the
    default when its history is too short to measure it."""
    slots = base.exposure_s / width_s if width_s > 0 else 0.0
    if slots < MIN_SLOTS_FOR_DISPERSION or base.stories < MIN_STORIES_FOR_DISPERSION:
        return DEFAULT_DISPERSION
    mean = base.stories / slots
    variance = base.count_sq_sum / slots - mean * mean
    return min(MAX_DISPERSION, max(1.0, variance / mean))


def upper_tail(count: float, shape: float, rate_s: float, exposure_s: float) -> float:
    """P(X >= count) for the Gamma-Poisson (negative binomial) predictive: X | lam ~ Poisson(lam * exposure_s),
    lam ~ Gamma(shape, rate_s). Equals the regularized incomplete beta I_q(count, shape), q = t / (rate + t);
    ``count`` may be fractional (counts scaled by the dispersion)."""
    if count <= 0:
        return 1.0
    q = exposure_s / (rate_s + exposure_s)
    return float(betainc(count, shape, q))


def volume(count: int, window_s: float, base: BaselineSums, width_s: float) -> Volume:
    """How surprising ``count`` stories in ``window_s`` seconds are, given the entity's history.

    Quasi-Poisson: counts are divided by the entity's dispersion D (clusters of stories count as one event),
    the rate's uncertainty is a Gamma posterior (prior RATE_PRIOR_STORIES in RATE_PRIOR_S), so a short
    history gives a wide, negative-binomial predictive and never a confident "10x".
    """
    d = dispersion(base, width_s)
    shape = RATE_PRIOR_STORIES + base.stories / d
    rate_s = RATE_PRIOR_S + base.exposure_s
    expected = shape / rate_s * window_s * d
    p = upper_tail(count / d, shape, rate_s, window_s)
    surprise = MAX_SURPRISE if p <= 0 else min(MAX_SURPRISE, max(0.0, -math.log10(p)))
    return Volume(surprise, expected, d)


def pooled_baseline(entity: BaselineSums, market: BaselineSums | None) -> tuple[float, float]:
    """(mean, variance) of one story's score: the entity's own, pooled with the market's by POOL_WEIGHT."""
    m_mean, m_var = MARKET_PRIOR_MEAN, MARKET_PRIOR_VAR
    if market is not None and market.weight > 0:
        m_mean, m_var = _moments(market)
        m_var = (market.weight * m_var + POOL_WEIGHT * MARKET_PRIOR_VAR) / (market.weight + POOL_WEIGHT)
    if entity.weight <= 0:
        return m_mean, m_var
    e_mean, e_var = _moments(entity)
    total = entity.weight + POOL_WEIGHT
    return ((entity.weight * e_mean + POOL_WEIGHT * m_mean) / total,
            (entity.weight * e_var + POOL_WEIGHT * m_var) / total)


def _moments(base: BaselineSums) -> tuple[float, float]:
    mean = base.score_sum / base.weight
    return mean, max(0.0, base.score_sq_sum / base.weight - mean * mean)


def between_variance(base: BaselineSums, story_var: float) -> float:
    """Variance of the entity's true bucket means: the spread of its bucket means less what sampling alone
    explains (sigma^2 / n per bucket), floored."""
    if base.buckets < 3:
        return MIN_BETWEEN_VAR
    mu = base.mean_sum / base.buckets
    observed = base.mean_sq_sum / base.buckets - mu * mu
    return max(MIN_BETWEEN_VAR, observed - story_var * base.inverse_count_sum / base.buckets)


def sentiment(weight: float, weight_sq: float, score_sum: float, base: BaselineSums,
              market: BaselineSums | None) -> Sentiment:
    """The window's weighted mean judged against the entity's pooled baseline.

    ``z`` uses the standard error sigma / sqrt(n_eff), n_eff = (sum w)^2 / sum w^2 (Kish), so one story moves
    an entity about sqrt(50) times less far than fifty. ``shrunk`` is the empirical-Bayes posterior mean
    (n_eff * mean + k * mu) / (n_eff + k) with k = sigma^2 / tau^2 (tau^2: between-window variance).
    """
    mu, var = pooled_baseline(base, market)
    sd = max(MIN_STORY_SD, math.sqrt(var))
    if weight <= 0 or weight_sq <= 0:
        return Sentiment(None, None, mu, sd)
    mean = score_sum / weight
    n_eff = weight * weight / weight_sq
    k = sd * sd / between_variance(base, sd * sd)
    return Sentiment((mean - mu) / (sd / math.sqrt(n_eff)), (n_eff * mean + k * mu) / (n_eff + k), mu, sd)


def p_value_text(surprise: float | None) -> str:
    """-log10 p as a trader reads it: ``p < 1e-6``, ``p = 0.03``."""
    if surprise is None:
        return "no history"
    if surprise >= 3:
        return f"p < 1e-{math.floor(surprise)}"
    return f"p = {10 ** -surprise:.2g}"
