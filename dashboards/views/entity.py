"""Entity: one entity's sentiment with volume and its baseline band, its alerts, and its recent headlines."""

from __future__ import annotations

import logging

import streamlit as st

from dashboards import auth, charts
from dashboards.formatting import SENTIMENT_COLORS, escape_markdown, highlight, signed, utc
from dashboards.queries import trends
from dashboards.state import load, settings

log = logging.getLogger(__name__)

WINDOWS = {"1 h": 1.0, "6 h": 6.0, "24 h": 24.0, "3 d": 72.0}
SEARCH_DAYS = 7.0
HEADLINES = 20


def pick_entity() -> str | None:
    """Search box + choice; ``?entity=TICKER:AAPL`` in the URL preselects (links from other pages)."""
    wanted = st.query_params.get("entity")
    left, right = st.columns([1, 2])
    text = left.text_input("Search", key="entity_search", placeholder="AAPL, tesla, ORG:apple ...",
                           help="Part of an entity key: TICKER:AAPL, ORG:apple inc, PER:tim cook, LOC:...")
    options = load(trends.search_entities, text or "", SEARCH_DAYS, 50)
    if wanted and wanted not in options and not text:
        options = [wanted, *options]
    if not options:
        right.selectbox("Entity", [], key="entity_pick", placeholder="no entity matches")
        return None
    index = options.index(wanted) if wanted in options else 0
    chosen = right.selectbox("Entity", options, index=index, key="entity_pick")
    if chosen and chosen != wanted:
        st.query_params["entity"] = chosen
    return chosen


def trend(entity: str, hours: float) -> None:
    current = settings()
    bucket_s = current.signal_bucket_s
    frame = load(trends.entity_trend, entity, hours, bucket_s, current.signal_baseline_days)
    alerts = load(trends.entity_alerts, entity, hours)
    if frame.empty:
        st.info(f"No stories about {entity} in this window.")
        return
    latest = frame.iloc[-1]
    cols = st.columns(4)
    cols[0].metric("Stories in window", int(frame["count"].sum()), border=True)
    cols[1].metric("Latest mean sentiment", signed(_float(latest["mean_sentiment"])), border=True)
    cols[2].metric("Latest z-score", signed(_float(latest["zscore"])), border=True)
    cols[3].metric("Alerts in window", len(alerts), border=True)
    width = trends.display_width(hours, bucket_s)
    shown = trends.resample(frame, width)
    st.altair_chart(charts.sentiment_volume(shown, width, alerts=alerts, band=True), width="stretch")
    st.caption("Line: confidence-weighted mean sentiment. Band: baseline mean ± 2 std of the trailing "
               f"{current.signal_baseline_days:g} days. Bars: stories per bucket. Dashed rules: alerts.")


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN -> None


def headlines(entity: str) -> None:
    st.subheader("Recent headlines")
    items = load(trends.entity_headlines, entity, HEADLINES)
    if not items:
        st.info("No headlines mention this entity yet.")
        return
    for item in items:
        color = SENTIMENT_COLORS.get(item.sentiment, "gray")
        with st.container(border=True):
            st.markdown(highlight(item.headline, item.entities))
            st.caption(f":{color}[{item.sentiment} {item.score:+.2f}] · confidence {item.confidence:.2f} · "
                       f"{escape_markdown(item.source)} · {utc(item.published_at)}")


def render() -> None:
    current = settings()
    st.title("Entity")
    entity = pick_entity()
    if entity is None:
        st.info("No entity has signals in the last week. Entities appear once the consumer scores news.")
        return
    choice = st.segmented_control("Window", list(WINDOWS), default="6 h", key="entity_window")
    hours = WINDOWS.get(choice or "6 h", 6.0)

    @st.fragment(run_every=current.dashboard_refresh_s)
    def live() -> None:
        auth.guard_fragment()
        trend(entity, hours)
        headlines(entity)

    live()


render()
