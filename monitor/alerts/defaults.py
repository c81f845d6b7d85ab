"""The rules finpulse recommends (the demo seeds them, ``finpulse bench alerts`` measures them), and the demo's
rules before the alert statistics existed, kept so the benchmark can show what changed.

Why these thresholds (README, "Alert statistics"): a desk watching ~1,000 entities evaluated every minute makes
~1.4 million judgements a day, so a per-judgement false-alarm probability has to be around 1e-6 for a handful of
false alerts a day: ``volume_surprise > 6`` is p < 1e-6. A sentiment z-score of 4 is p ~ 3e-5 one-sided, but it
also needs ``min_stories`` stories whose mean is that far off, which a single odd story cannot supply.
"""

from __future__ import annotations

import logging

from schemas.alerts import AlertRuleIn

log = logging.getLogger(__name__)

RECOMMENDED_RULES = (
    AlertRuleIn(name="negative-news-burst", entity="TICKER:*", metric="sentiment_z", comparator="<", threshold=-4.0,
                recovery_threshold=-2.0, window_s=3600, min_stories=4, no_data_windows=1, severity="warning",
                description="A ticker's news over the last hour is at least 4 standard errors more negative than "
                            "its normal, on at least 4 stories."),
    AlertRuleIn(name="positive-news-burst", entity="TICKER:*", metric="sentiment_z", comparator=">", threshold=4.0,
                recovery_threshold=2.0, window_s=3600, min_stories=4, no_data_windows=1, severity="info",
                description="A ticker's news over the last hour is at least 4 standard errors more positive than "
                            "its normal, on at least 4 stories."),
    AlertRuleIn(name="news-volume-surge", entity="TICKER:*", metric="volume_surprise", comparator=">", threshold=6.0,
                recovery_threshold=3.0, window_s=1800, min_stories=5, no_data_windows=1, severity="info",
                description="At least 5 stories about a ticker in 30 minutes, a count its history makes less "
                            "likely than 1 in a million (p < 1e-6)."),
    AlertRuleIn(name="market-sentiment-drop", entity="*", metric="sentiment_z", comparator="<", threshold=-4.0,
                recovery_threshold=-2.0, window_s=3600, min_stories=10, no_data_windows=1, severity="warning",
                description="The whole market's news over the last hour is at least 4 standard errors more "
                            "negative than its normal."),
)

# The demo's rules until the alert statistics: a raw mean and a raw volume ratio, one story enough.
PREVIOUS_DEMO_RULES = (
    AlertRuleIn(name="previous-market-sentiment-drop", entity="*", metric="mean_sentiment", comparator="<",
                threshold=-0.3, recovery_threshold=-0.2, window_s=1800, min_stories=1, no_data_windows=0),
    AlertRuleIn(name="previous-ticker-volume-spike", entity="TICKER:*", metric="volume_ratio", comparator=">",
                threshold=8.0, window_s=900, min_stories=1, no_data_windows=0),
)
