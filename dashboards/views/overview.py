"""Overview: live tiles, the market's sentiment and volume, an entity x time heat map, and the top movers."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from dashboards import auth, charts
from dashboards.formatting import ago, escape_markdown, utc
from dashboards.queries import consumers, trends
from dashboards.queries.consumers import Consumer
from dashboards.state import load, settings

log = logging.getLogger(__name__)

WINDOWS = {"1 h": 1.0, "6 h": 6.0, "24 h": 24.0, "7 d": 168.0}
HEATMAP_ENTITIES = 15
MOVERS = 10
STALE_AFTER_S = 60.0  # a consumer silent for longer (and 3 stats intervals) is not counted in the lag tile
# The health states of monitor.stream.health as the Overview words them (any other state is shown as it is).
STATES = {
    "starting": "is starting (loading the model, joining the group)",
    "database_retrying": "cannot write to the database and is retrying, its partitions paused",
    "broker_reconnecting": "lost the broker and is reconnecting",
    "model_refused": "refused the champion and serves {version}, the last good version",
}


def tiles() -> None:
    current = settings()
    data = load(trends.tiles)
    running = load(consumers.live_consumers, max(STALE_AFTER_S, 3 * current.stats_interval_s),
                   current.kafka_group_id)
    cols = st.columns(5)
    # By scoring time, the consumer's throughput: a backlog worked off (the demo's history burst at start-up, the
    # catch-up after an outage) shows as a spike, then drops back. The delta is the news flow by publication time,
    # which a backlog does not inflate; the help says which is which, so a falling number is not read as a lull.
    window = trends.RATE_WINDOW_MIN
    cols[0].metric("Stories / min (scored, last 5 min)", f"{data.per_minute:.1f}", border=True,
                   delta=f"{data.published_per_minute:.1f} / min published", delta_color="off", delta_arrow="off",
                   help=f"{data.last_5min} stories scored in the last {window} minutes, ÷ {window}, counted by the "
                        "time the consumer scored them: a backlog being worked off (the demo's burst of past "
                        "news at start-up, a catch-up after an outage) shows as a spike that drops back once it is "
                        f"done. Below: {data.published_5min} stories published in the same {window} minutes "
                        "(their own time stamps), the rate at which news arrives.")
    plural = "" if len(running.live) == 1 else "s"
    topics = ", ".join(running.topics) or current.kafka_topic
    cols[1].metric("Consumer lag", "-" if running.lag is None else f"{running.lag:,}", border=True,
                   delta=f"{len(running.live)} consumer{plural} reporting", delta_color="off", delta_arrow="off",
                   help=f"Messages on {topics} not yet consumed, summed over the running consumers of group "
                        f"{current.kafka_group_id} (each reports every {current.stats_interval_s:g} s; as of "
                        f"{utc(running.reported_at)}).")
    cols[2].metric("Last story scored", ago(data.newest_scored_at), border=True, help=utc(data.newest_scored_at))
    cols[3].metric("Active alerts", data.firing, border=True, delta=f"{data.pending} pending", delta_color="off",
                   delta_arrow="off")
    serving = data.serving_version or "-"
    note = None if data.champion_version in (None, data.serving_version) else f"champion {data.champion_version}"
    cols[4].metric("Model serving", serving, border=True, delta=note, delta_color="off", delta_arrow="off",
                   help="Version that scored the newest story; the consumer picks up a new champion on its next poll.")
    if running.topics and running.topics != (current.kafka_topic,):
        st.caption(f"Consumer lag on {', '.join(f'`{t}`' for t in running.topics)}, the topic(s) the consumers of "
                   f"`{current.kafka_group_id}` read (this dashboard's FINPULSE_KAFKA_TOPIC is "
                   f"`{current.kafka_topic}`; the demo reads a topic of its own per run).")
    for consumer in running.not_ok:
        st.warning(consumer_line(consumer), icon="⚠️")


def consumer_line(consumer: Consumer) -> str:
    """``Consumer host:1 (topic t) is retrying the database since its last report 5s ago: <detail>``."""
    state = STATES.get(consumer.status, consumer.status).format(version=consumer.model_version or "-")
    line = (f"Consumer {escape_markdown(consumer.member)} (topic {escape_markdown(consumer.topic)}) {state} "
            f"(reported {ago(consumer.updated_at)})")
    return f"{line}: {escape_markdown(consumer.detail)}" if consumer.detail else line


def market(hours: float, bucket_s: int) -> None:
    st.subheader("Market sentiment and volume")
    frame = load(trends.market_trend, hours, bucket_s)
    if frame.empty:
        st.info("No scored news in this window yet. Start `finpulse consume` (and a producer) to see the trend.")
        return
    width = trends.display_width(hours, bucket_s)
    st.altair_chart(charts.sentiment_volume(trends.resample(frame, width), width), width="stretch")


def heat(hours: float, bucket_s: int) -> None:
    st.subheader(f"Sentiment by entity (top {HEATMAP_ENTITIES} by volume)")
    frame = load(trends.heatmap, hours, bucket_s, HEATMAP_ENTITIES)
    if frame.empty:
        st.info("No entity signals in this window yet.")
        return
    width = trends.display_width(hours, bucket_s)
    st.altair_chart(charts.heatmap(trends.resample(frame, width), width), width="stretch")


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
    min_stories = settings().movers_min_stories
    by_z, by_volume = load(trends.top_movers, bucket_s, 12, MOVERS, min_stories)
    left, right = st.columns(2)
    with left:
        st.subheader("Top movers by z-score")
        st.caption(f"Each entity's newest bucket in the last hour (with at least {min_stories} stories) vs its "
                   "trailing baseline.")
        if by_z.empty:
            st.info(f"No z-scores yet (an entity needs a few baseline buckets and {min_stories}+ stories in its "
                    "newest one; FINPULSE_MOVERS_MIN_STORIES).")
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
        auth.guard_fragment()
        tiles()
        market(hours, bucket_s)
        heat(hours, bucket_s)
        movers(bucket_s)

    live()


render()
