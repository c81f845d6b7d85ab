"""The alert statistics (monitor.alerts.stats), checked against scipy's distributions and against the properties a
risk desk relies on: a steady entity's burst is surprising, a new entity's first stories are not, clustered news
is discounted, and one story never moves an entity as far as fifty."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import pytest
from scipy import stats as scipy_stats

from monitor.alerts.stats import (
    RATE_PRIOR_S,
    RATE_PRIOR_STORIES,
    BaselineSums,
    dispersion,
    p_value_text,
    sentiment,
    upper_tail,
    volume,
)

HOUR, DAY = 3600.0, 86_400.0
WIDTH_S = 900  # signal buckets of 15 minutes
WINDOW_S = 900.0
Story = tuple[float, float]  # (score, confidence)


def history(buckets: Sequence[Sequence[Story]], width_s: float = WIDTH_S) -> BaselineSums:
    """The sums a stored history of ``buckets`` (consecutive, empty ones included) would give."""
    sums: dict[str, float] = dict.fromkeys(
        ("stories", "count_sq_sum", "weight", "score_sum", "score_sq_sum", "buckets", "mean_sum", "mean_sq_sum",
         "inverse_count_sum"), 0.0)
    for bucket in buckets:
        if not bucket:
            continue
        weight = sum(c for _, c in bucket)
        mean = sum(c * s for s, c in bucket) / weight
        sums["stories"] += len(bucket)
        sums["count_sq_sum"] += len(bucket) ** 2
        sums["weight"] += weight
        sums["score_sum"] += sum(c * s for s, c in bucket)
        sums["score_sq_sum"] += sum(c * s * s for s, c in bucket)
        sums["buckets"] += 1
        sums["mean_sum"] += mean
        sums["mean_sq_sum"] += mean * mean
        sums["inverse_count_sum"] += 1 / len(bucket)
    return BaselineSums(exposure_s=len(buckets) * width_s, stories=int(sums.pop("stories")),
                        buckets=int(sums.pop("buckets")), **sums)


def steady(days: float = 7, per_hour: int = 1, score: float = 0.1) -> BaselineSums:
    """``per_hour`` stories every hour, in the first quarter hour."""
    slots = int(days * DAY / WIDTH_S)
    return history([[(score, 1.0)] * per_hour if i % 4 == 0 else [] for i in range(slots)])


def increasing(values: Sequence[float]) -> bool:
    return all(later > earlier for earlier, later in pairwise(values))


def decreasing(values: Sequence[float]) -> bool:
    return increasing([-value for value in values])


def surprise(count: int, base: BaselineSums) -> float:
    value = volume(count, WINDOW_S, base, WIDTH_S).surprise
    assert value is not None
    return value


# --- volume ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "shape", "rate_s", "exposure_s"), [
    (1, 0.5, DAY, 900.0), (3, 0.5, DAY, 900.0), (12, 168.5, 7 * DAY, 900.0), (5, 2.25, 3600.0, 7200.0),
    (40, 30.0, 600.0, 60.0), (2, 1000.0, 10 * DAY, 30 * DAY),
])
def test_upper_tail_is_the_negative_binomial_survival_function(count: int, shape: float, rate_s: float,
                                                               exposure_s: float) -> None:
    expected = scipy_stats.nbinom.sf(count - 1, shape, rate_s / (rate_s + exposure_s))
    assert upper_tail(count, shape, rate_s, exposure_s) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_a_poisson_like_history_gives_the_gamma_poisson_posterior_predictive() -> None:
    base = steady()
    assert dispersion(base, WIDTH_S) == 1.0  # one story per hour is less dispersed than Poisson: no discount
    shape, rate_s = RATE_PRIOR_STORIES + base.stories, RATE_PRIOR_S + base.exposure_s  # the prior, plus the history
    for count in (1, 2, 5, 12):
        tail = scipy_stats.nbinom.sf(count - 1, shape, rate_s / (rate_s + WINDOW_S))
        assert surprise(count, base) == pytest.approx(-math.log10(tail), rel=1e-9)


def test_surprise_grows_with_the_count_and_is_capped() -> None:
    for base in (steady(), BaselineSums(), steady(days=1, per_hour=3)):
        values = [surprise(count, base) for count in range(0, 40)]
        assert values[0] == 0.0
        assert increasing(values)
    huge = surprise(100_000, steady())
    assert math.isfinite(huge) and huge == surprise(1_000_000, steady())  # the float tail's floor, not inf


def test_a_steady_entitys_burst_is_surprising_and_its_usual_story_is_not() -> None:
    base = steady()  # one story an hour for a week
    assert surprise(12, base) > 6
    assert surprise(1, base) < 1
    expected = volume(1, WINDOW_S, base, WIDTH_S).expected
    assert expected is not None and 0.2 < expected < 0.25  # a quarter-hour of its rate, pulled toward the prior


def test_a_brand_new_entitys_first_stories_are_no_surprise() -> None:
    new = BaselineSums()
    result = volume(3, WINDOW_S, new, WIDTH_S)
    assert result.dispersion == dispersion(new, WIDTH_S) > 1  # too little history to measure: the default
    assert result.surprise is not None and result.surprise < 6
    # A few days of history too short to measure clustering still uses the default.
    assert dispersion(steady(days=0.2), WIDTH_S) == result.dispersion


def test_clustered_history_lowers_the_surprise_of_a_burst() -> None:
    slots = int(7 * DAY / WIDTH_S)
    poisson_like = steady()
    # The same 168 stories in 14 clusters of 12 (one event, many stories).
    clustered = history([[(0.1, 1.0)] * 12 if i % 48 == 0 else [] for i in range(slots)])
    assert clustered.stories == poisson_like.stories
    assert dispersion(clustered, WIDTH_S) > 5 * dispersion(poisson_like, WIDTH_S)
    assert surprise(12, clustered) < surprise(12, poisson_like) / 2
    assert surprise(12, clustered) < 6  # twelve stories is what this entity's events look like


# --- sentiment -------------------------------------------------------------------------------------------------
def window(scores: Sequence[float], confidences: Sequence[float] | None = None) -> tuple[float, float, float]:
    """(weight, weight_sq, score_sum) of a window's stories."""
    weights = list(confidences) if confidences is not None else [1.0] * len(scores)
    return sum(weights), sum(w * w for w in weights), sum(w * s for w, s in zip(weights, scores, strict=True))


def test_sentiment_z_grows_like_the_square_root_of_the_story_count() -> None:
    base = steady(score=0.1)
    one = sentiment(*window([-0.8]), base, None).z
    fifty = sentiment(*window([-0.8] * 50), base, None).z
    assert one is not None and fifty is not None and fifty < one < 0
    assert fifty / one == pytest.approx(math.sqrt(50), rel=1e-6)


def test_unequal_confidences_count_as_fewer_stories() -> None:
    base = steady(score=0.1)
    equal = sentiment(*window([-0.8] * 10, [0.9] * 10), base, None).z
    # Same mean and total weight, but two confident stories carry almost all of it.
    lopsided = sentiment(*window([-0.8] * 10, [4.0, 4.0] + [0.125] * 8), base, None).z
    assert equal is not None and lopsided is not None
    assert equal < lopsided < 0


def test_shrunk_mean_lies_between_window_and_baseline_and_approaches_the_window_with_more_stories() -> None:
    base = steady(score=0.2)
    gaps = []
    for n in (1, 3, 10, 100, 1000):
        result = sentiment(*window([-0.6] * n), base, None)
        assert result.shrunk is not None
        assert -0.6 < result.shrunk < result.baseline_mean
        gaps.append(result.shrunk - (-0.6))
    assert decreasing(gaps)
    assert gaps[-1] < 0.05 * (result.baseline_mean + 0.6)


def test_an_empty_window_has_no_sentiment_but_keeps_its_baseline() -> None:
    result = sentiment(0.0, 0.0, 0.0, steady(score=0.3), None)
    assert (result.z, result.shrunk) == (None, None)
    assert 0.0 < result.baseline_mean < 0.3 and result.baseline_sd > 0


def test_an_entity_without_history_is_judged_against_the_market() -> None:
    market = history([[(0.25, 1.0), (0.35, 1.0)] for _ in range(200)])
    scores = window([-0.5] * 5)
    judged = sentiment(*scores, BaselineSums(), market)
    assert judged.baseline_mean == pytest.approx(0.3)
    unjudged = sentiment(*scores, BaselineSums(), None)  # not even a market: a neutral prior
    assert unjudged.baseline_mean == 0.0
    assert judged.z is not None and unjudged.z is not None and judged.z < unjudged.z < 0
    # An entity with a long history of its own is judged mostly against it.
    own = sentiment(*scores, steady(score=-0.4), market)
    assert own.baseline_mean == pytest.approx(-0.4, abs=0.05)


def test_a_young_entitys_baseline_moves_from_the_market_toward_its_own_history() -> None:
    market = history([[(0.3, 1.0)] for _ in range(500)])
    means = [sentiment(*window([0.0] * 3), history([[(-0.5, 1.0)]] * stories), market).baseline_mean
             for stories in (0, 1, 5, 20, 200)]
    assert means[0] == pytest.approx(0.3)
    assert decreasing(means)
    assert means[-1] == pytest.approx(-0.5, abs=0.05)


# --- presentation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("surprise_value", "text"), [
    (None, "no history"), (0.0, "p = 1"), (1.5, "p = 0.032"), (2.999, "p = 0.001"), (3.0, "p < 1e-3"),
    (6.7, "p < 1e-6"), (300.0, "p < 1e-300"),
])
def test_p_value_text(surprise_value: float | None, text: str) -> None:
    assert p_value_text(surprise_value) == text
