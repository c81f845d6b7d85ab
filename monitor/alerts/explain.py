"""Why an alert fired, in words a trader reads at a glance: "12 stories in 15 min, 0.4 expected; p < 1e-6"."""

from __future__ import annotations

import logging

from monitor.alerts.durations import duration_text
from monitor.alerts.metrics import WindowMetrics
from monitor.alerts.stats import p_value_text

log = logging.getLogger(__name__)


def _stories(count: int) -> str:
    return f"{count} {'story' if count == 1 else 'stories'}"


def _signed(value: float | None) -> str:
    # round() then + 0.0: a mean of -0.001 reads "+0.00", never "-0.00", however its float sums were added up
    return "n/a" if value is None else f"{round(value, 2) + 0.0:+.2f}"


def explain(metric: str, m: WindowMetrics, window_s: int) -> str:
    """One sentence on the window behind ``metric``."""
    span = f"{_stories(m.count)} in {duration_text(window_s)}"
    if metric == "volume_surprise":
        expected = "no history" if m.expected_count is None else f"{m.expected_count:.1f} expected"
        return f"{span}, {expected}; {p_value_text(m.volume_surprise)}"
    normal = f"normal {_signed(m.baseline_mean)}" + ("" if m.baseline_sd is None else f" ± {m.baseline_sd:.2f}")
    if metric == "sentiment_z":
        side = "below" if (m.sentiment_z or 0) < 0 else "above"
        size = "n/a" if m.sentiment_z is None else f"{abs(m.sentiment_z):.1f}"
        return (f"{span} averaging {_signed(m.mean_sentiment)} against a {normal}: {size} standard errors {side} "
                "it")
    if metric == "sentiment_shrunk":
        return (f"{span} averaging {_signed(m.mean_sentiment)}, {_signed(m.sentiment_shrunk)} after allowing for "
                f"so few stories ({normal})")
    if metric == "negative_share":
        share = "n/a" if m.negative_share is None else f"{m.negative_share:.0%}"
        return f"{span}, {share} of them negative"
    if metric == "mean_sentiment":
        return f"{span} averaging {_signed(m.mean_sentiment)}"
    if metric == "count":
        return span
    value = m.value(metric)
    return f"{span}; most extreme bucket's {metric.replace('_', ' ')} {'n/a' if value is None else f'{value:.2f}'}"
