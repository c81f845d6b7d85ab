"""Overview: live tiles, the market's sentiment and volume, an entity x time heat map, and the top movers."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from dashboards import charts, queries
from dashboards.formatting import ago, utc
from dashboards.state import load, settings

log = logging.getLogger(__name__)

WINDOWS = {"1 h": 1.0, "6 h": 6.0, "24 h": 24.0, "7 d": 168.0}
HEATMAP_ENTITIES = 15
MOVERS = 10


def tiles() -> None:
    data = load(queries.tiles)
    cols = st.columns(5)
    cols[0].metric("Stories / min (5-min avg)", f"{data.per_minute:.1f}", border=True)
    cols[1].metric("Stories in last 5 min", data.last_5min, border=True,
                   help="Consumer lag is logged by `finpulse consume` (stats line); this is what reached the DB.")
    cols[2].metric("Last story scored", ago(data.newest_scored_at), border=True, help=utc(data.newest_scored_at))
    cols[3].metric("Active alerts", data.firing, border=True, delta=f"{data.pending} pending", delta_color="off",
                   delta_arrow="off")
    serving = data.serving_version or "-"
    note = None if data.champion_version in (None, data.serving_version) else f"champion {data.champion_version}"
    cols[4].metric("Model serving", serving, border=True, delta=note, delta_color="off", delta_arrow="off",
                   help="Version that scored the newest story; the consumer picks up a new champion on its next poll.")


def market(hours: float, bucket_s: int) -> None:
    st.subheader("Market sentiment and volume")
    frame = load(queries.market_trend, hours, bucket_s)
    if frame.empty:
        st.info("No scored news in this window yet. Start `finpulse consume` (and a producer) to see the trend.")
        return
    width = queries.display_width(hours, bucket_s)
    st.altair_chart(charts.sentiment_volume(queries.resample(frame, width), width), width="stretch")


def heat(hours: float, bucket_s: int) -> None:
    st.subheader(f"Sentiment by entity (top {HEATMAP_ENTITIES} by volume)")
    frame = load(queries.heatmap, hours, bucket_s, HEATMAP_ENTITIES)
    if frame.empty:
        st.info("No entity signals in this window yet.")
        return
    width = queries.display_width(hours, bucket_s)
    st.altair_chart(charts.heatmap(queries.resample(frame, width), width), width="stretch")


def _movers_table(frame: pd.DataFrame) -> None:
    shown = frame[["entity", "zscore", "volume_ratio", "mean_sentiment", "count"]]
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        "entity": st.column_config.TextColumn("Entity"),
        "zscore": st.column_config.NumberColumn("z-score", format="%+.2f"),
        "volume_ratio": st.column_config.NumberColumn("Volume ratio", format="%.2f×"),
        "mean_sentiment": st.column_config.NumberColumn("Mean sentiment", format="%+.2f"),
        "count": st.column_config.NumberColumn("Stories", format="%d"),
    })


def movers(bucket_s: int) -> None:
    by_z, by_volume = load(queries.top_movers, bucket_s, 12, MOVERS)
    left, right = st.columns(2)
    with left:
        st.subheader("Top movers by z-score")
        st.caption("Each entity's newest bucket in the last hour vs its trailing baseline.")
        if by_z.empty:
            st.info("No z-scores yet (an entity needs a few baseline buckets).")
        else:
            _movers_table(by_z)
    with right:
        st.subheader("Top movers by volume ratio")
        st.caption("Stories in the newest bucket / the baseline's stories per bucket.")
        if by_volume.empty:
            st.info("No volume ratios yet.")
        else:
            _movers_table(by_volume)


def render() -> None:
    current = settings()
    st.title("Overview")
    choice = st.segmented_control("Window", list(WINDOWS), default="6 h", key="overview_window")
    hours = WINDOWS.get(choice or "6 h", 6.0)
    bucket_s = current.signal_bucket_s

    @st.fragment(run_every=current.dashboard_refresh_s)
    def live() -> None:
        tiles()
        market(hours, bucket_s)
        heat(hours, bucket_s)
        movers(bucket_s)

    live()


render()
