"""The dashboard's pure helpers: safe Markdown, label entities, chart resampling, the CLI command line."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from dashboards.cli import streamlit_command
from dashboards.formatting import ago, escape_markdown, highlight
from dashboards.labels import build_entities
from dashboards.queries import trends
from monitor.alerts.durations import duration_text, parse_duration
from monitor.app import app
from monitor.core.errors import DataError


def test_untrusted_news_text_cannot_inject_markdown() -> None:
    text = "![x](http://evil/pixel) :red[fake] $x$ <b>hi</b>\n# heading"
    escaped = escape_markdown(text)
    for raw in ("![", "](", ":red[", "$x$", "<b>", "\n"):
        assert raw not in escaped
    marked = highlight("Shares of Tesla [sic] fall", [{"start": 10, "end": 15, "sentiment": "negative"},
                                                      {"start": 3, "end": 99, "sentiment": "positive"}])
    assert marked == "Shares of :red-background[Tesla] \\[sic\\] fall"  # the out-of-range span is ignored


def test_build_entities_places_spans_and_rejects_what_training_would() -> None:
    text = "Apple and Apple suppliers rally in Cupertino"
    rows = [{"text": "Apple", "type": "ORG", "sentiment": "positive", "start": None, "end": None},
            {"text": "Apple", "type": "ORG", "sentiment": None, "start": float("nan"), "end": float("nan")},
            {"text": "Cupertino", "type": "LOC", "sentiment": "neutral", "start": 35, "end": 44},
            {"text": "", "type": "ORG", "sentiment": None, "start": None, "end": None}]
    assert build_entities(text, rows) == [
        {"start": 0, "end": 5, "type": "ORG", "text": "Apple", "sentiment": "positive"},
        {"start": 10, "end": 15, "type": "ORG", "text": "Apple", "sentiment": None},
        {"start": 35, "end": 44, "type": "LOC", "text": "Cupertino", "sentiment": "neutral"},
    ]
    with pytest.raises(DataError, match="does not occur"):
        build_entities(text, [{"text": "Microsoft", "type": "ORG"}])
    with pytest.raises(DataError, match="type must be one of"):
        build_entities(text, [{"text": "Apple", "type": "THING"}])
    with pytest.raises(DataError, match="overlap"):
        build_entities(text, [{"text": "Apple suppliers", "type": "ORG"}, {"text": "suppliers", "type": "ORG",
                                                                          "start": 16, "end": 25}])


def test_resample_reweights_the_mean_like_the_signal_writer() -> None:
    start = pd.Timestamp("2024-03-01 09:00", tz="UTC")
    frame = pd.DataFrame({
        "entity": ["X", "X", "X"], "bucket_start": [start, start + pd.Timedelta("5min"), start + pd.Timedelta("1h")],
        "count": [1.0, 3.0, 2.0], "negative_count": [1.0, 0.0, 0.0], "weight_sum": [1.0, 3.0, 2.0],
        "weighted_score_sum": [-1.0, 1.5, 0.2], "mean_sentiment": [-1.0, 0.5, 0.1], "negative_share": [1, 0, 0],
        "zscore": [-3.0, 1.0, None], "volume_ratio": [0.5, 1.5, 1.0], "ewma_score": [-1.0, 0.1, 0.1],
    })
    out = trends.resample(frame, 3600)
    first = out.iloc[0]
    assert len(out) == 2 and first["count"] == 4
    assert first["mean_sentiment"] == pytest.approx(0.5 / 4)  # (-1 + 1.5) / (1 + 3)
    assert first["zscore"] == -3.0 and first["volume_ratio"] == 1.5 and first["negative_share"] == 0.25
    assert trends.display_width(6, 300) == 300 and trends.display_width(168, 300) == 3600


def test_durations_round_trip_through_the_cli_parser() -> None:
    for seconds in (0, 45, 900, 3600, 5400, 86_400, 14_400):
        assert parse_duration(duration_text(seconds), "window_s") == seconds
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert ago(datetime(2024, 3, 1, 11, 58, 30, tzinfo=UTC), now) == "1m ago"
    assert ago(None) == "never"


def test_cli_registers_dashboard_and_hash_password() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["dashboard", "hash-password"], input="pw123\npw123\n")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("$2b$")
    command = streamlit_command(8600, "127.0.0.1")
    assert command[1:4] == ["-m", "streamlit", "run"] and "8600" in command and "true" in command
