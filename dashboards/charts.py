"""Altair charts of the dashboard. Times are shown in UTC and every time axis says so.

Vega-Lite shows a zone-less timestamp as it is, whatever the viewer's zone, so times are handed over as naive UTC:
the browser then draws exactly the UTC wall clock that the axis title promises.
"""

from __future__ import annotations

import logging

import altair as alt
import pandas as pd

log = logging.getLogger(__name__)

TIME_TITLE = "time (UTC)"
SENTIMENT_SCALE = alt.Scale(domain=[-1, 1])
SEVERITY_COLORS = alt.Scale(domain=["info", "warning", "critical"], range=["#4c78a8", "#f58518", "#d62728"])


def utc_naive(values: pd.Series) -> pd.Series:
    """Aware timestamps -> naive UTC wall-clock timestamps (see the module docstring)."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None)


def _time_axis(times: pd.Series) -> alt.X:
    """24-hour clock labels; dates are added when the data spans more than a day and a half."""
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    fmt = "%b %d %H:%M" if span > pd.Timedelta(hours=36) else "%H:%M"
    return alt.X("time:T", title=TIME_TITLE, axis=alt.Axis(labelAngle=0, labelOverlap=True, format=fmt))


def sentiment_volume(frame: pd.DataFrame, bucket_s: int, alerts: pd.DataFrame | None = None,
                     band: bool = False) -> alt.LayerChart:
    """Bars: stories per bucket (right axis). Line: confidence-weighted mean sentiment (left axis, -1..1).

    With ``band`` the baseline mean +/- 2 standard deviations is shaded (the z-score's yardstick); ``alerts``
    (started_at, rule_name, severity, status) are drawn as vertical rules at the moment they started.
    """
    data = frame.assign(time=utc_naive(frame["bucket_start"]))
    if band and "baseline_mean" in data:
        data = data.assign(band_low=(data["baseline_mean"] - 2 * data["baseline_std"]).clip(lower=-1),
                           band_high=(data["baseline_mean"] + 2 * data["baseline_std"]).clip(upper=1))
    base = alt.Chart(data)
    x_axis = _time_axis(data["time"])
    zoom = alt.selection_interval(bind="scales", encodings=["x"])
    tooltip = [alt.Tooltip("time:T", title=TIME_TITLE, format="%Y-%m-%d %H:%M"),
               alt.Tooltip("count:Q", title="stories"),
               alt.Tooltip("mean_sentiment:Q", title="mean sentiment", format="+.2f")]
    bars = base.mark_bar(opacity=0.3, color="#7f7f7f").encode(
        x=x_axis,
        y=alt.Y("count:Q", title=f"stories per {bucket_s // 60 or 1} min", axis=alt.Axis(orient="right")),
        tooltip=tooltip,
    )
    line = base.mark_line(point=True, color="#1f77b4").encode(
        x=x_axis,
        y=alt.Y("mean_sentiment:Q", title="mean sentiment", scale=SENTIMENT_SCALE),
        tooltip=tooltip,
    ).add_params(zoom)
    sentiment_layers: list[alt.Chart] = []
    if band and "band_low" in data:
        sentiment_layers.append(base.mark_area(opacity=0.18, color="#1f77b4").encode(
            x=x_axis, y=alt.Y("band_low:Q", scale=SENTIMENT_SCALE, title="mean sentiment"), y2="band_high:Q",
            tooltip=[alt.Tooltip("baseline_mean:Q", title="baseline mean", format="+.2f"),
                     alt.Tooltip("baseline_std:Q", title="baseline std", format=".2f")],
        ))
    sentiment_layers.append(line)
    if alerts is not None and not alerts.empty:
        marks = alerts.assign(time=utc_naive(alerts["started_at"]))
        sentiment_layers.append(alt.Chart(marks).mark_rule(strokeWidth=2, strokeDash=[4, 3]).encode(
            x=x_axis,
            color=alt.Color("severity:N", scale=SEVERITY_COLORS, title="alert"),
            tooltip=[alt.Tooltip("rule_name:N", title="rule"), alt.Tooltip("status:N"),
                     alt.Tooltip("time:T", title="started (UTC)", format="%Y-%m-%d %H:%M"),
                     alt.Tooltip("value:Q", format=".2f")],
        ))
    chart: alt.LayerChart = alt.layer(bars, alt.layer(*sentiment_layers)).resolve_scale(y="independent")
    return chart.properties(height=320)


def heatmap(frame: pd.DataFrame, bucket_s: int) -> alt.Chart:
    """Entity x time, coloured by mean sentiment (red negative, green positive); busiest entities on top."""
    start = utc_naive(frame["bucket_start"])
    data = frame.assign(time=start, time_end=start + pd.Timedelta(seconds=bucket_s))
    order = data.groupby("entity")["count"].sum().sort_values(ascending=False).index.tolist()
    chart: alt.Chart = alt.Chart(data).mark_rect().encode(
        x=_time_axis(data["time"]),
        x2="time_end:T",
        y=alt.Y("entity:N", sort=order, title=None),
        color=alt.Color("mean_sentiment:Q", title="sentiment",
                        scale=alt.Scale(scheme="redyellowgreen", domain=[-1, 1])),
        tooltip=[alt.Tooltip("entity:N"), alt.Tooltip("time:T", title=TIME_TITLE, format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("count:Q", title="stories"),
                 alt.Tooltip("mean_sentiment:Q", title="mean sentiment", format="+.2f"),
                 alt.Tooltip("zscore:Q", title="z-score", format="+.2f"),
                 alt.Tooltip("volume_ratio:Q", title="volume ratio", format=".2f")],
    ).properties(height=alt.Step(20)).interactive(bind_y=False)
    return chart
