"""Alerts: firing, pending and resolved alerts with their evidence; acknowledge and silence (analysts and admins);
the rule editor (admins). The writes go through :mod:`dashboards.actions`, which checks the role at the write."""

from __future__ import annotations

import logging

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboards import actions, auth, rule_editor, state
from dashboards.actions import SILENCE_SCOPES
from dashboards.formatting import ago, escape_markdown, iso_utc, signed, utc
from dashboards.queries import alerts as alert_queries
from dashboards.state import load, settings
from monitor.alerts.durations import duration_text
from monitor.core.errors import FinpulseError

log = logging.getLogger(__name__)

SEVERITY_ICONS = {"critical": ":red[●]", "warning": ":orange[●]", "info": ":blue[●]"}
RESOLVED_HOURS = 24.0
LIMIT = 100


def _notify(message: str) -> None:
    state.invalidate()
    st.toast(message)


def evidence(alert: alert_queries.AlertView) -> None:
    headlines = alert.evidence.get("headlines") or []
    with st.expander(f"Evidence ({len(headlines)} headlines)"):
        for item in headlines[:10]:
            if isinstance(item, dict):
                st.markdown(f"- {signed(item.get('score'))} {escape_markdown(str(item.get('headline', '')))} "
                            f"· {escape_markdown(str(item.get('source', '')))} · {iso_utc(item.get('published_at'))}")
        st.json({key: value for key, value in alert.evidence.items() if key != "headlines"}, expanded=False)


def silence_form(alert: alert_queries.AlertView) -> None:
    with st.popover("Silence"), st.form(f"silence_{alert.id}", border=False):
        scope = st.radio("Mute", SILENCE_SCOPES, key=f"silence_scope_{alert.id}")
        duration = st.text_input("For", value="1h", key=f"silence_for_{alert.id}", help="30m, 2h, 1d")
        reason = st.text_input("Reason", key=f"silence_reason_{alert.id}")
        if st.form_submit_button("Silence"):
            try:
                message = actions.silence(alert.rule_id, alert.entity, scope or SILENCE_SCOPES[0], duration,
                                          reason or None)
            except FinpulseError as error:  # a bad duration (ConfigError) or role (PermissionDenied)
                st.error(str(error))
            else:
                _notify(message)
                st.rerun()


def acknowledge_button(alert: alert_queries.AlertView) -> None:
    if st.button("Acknowledge", key=f"ack_{alert.id}"):
        try:
            message = actions.acknowledge(alert.id)
        except FinpulseError as error:
            st.error(str(error))
        else:
            _notify(message)
            st.rerun()


def why(box: DeltaGenerator, alert: alert_queries.AlertView) -> None:
    """Why it fired, in words, first thing under the title; and why it resolved, for a resolved one."""
    if alert.resolved_explanation is None:
        box.markdown(f"**{escape_markdown(alert.explanation)}**")
        return
    box.markdown(f"**Fired:** {escape_markdown(alert.explanation)}  \n"
                 f"**Resolved:** {escape_markdown(alert.resolved_explanation)}")


def alert_card(alert: alert_queries.AlertView) -> None:
    with st.container(border=True):
        head, buttons = st.columns([4, 1])
        flags = []
        if alert.acked_at:
            flags.append(f":green[acknowledged by {escape_markdown(alert.acked_by or '?')} {ago(alert.acked_at)}]")
        if alert.silenced:
            flags.append(":gray[silenced]")
        head.markdown(f"{SEVERITY_ICONS.get(alert.severity, '●')} **{escape_markdown(alert.rule_name)}** on "
                      f"**{escape_markdown(alert.entity)}** · {alert.severity} {' · '.join(flags)}")
        why(head, alert)
        ended = f" · resolved {utc(alert.resolved_at)} at {signed(alert.resolved_value)}" if alert.resolved_at else ""
        # Both times are the news's (event time), not when the evaluator ran.
        head.caption(f"#{alert.id} · started {utc(alert.started_at)} ({ago(alert.started_at)}) · {alert.metric} "
                     f"{signed(alert.value)} vs threshold {alert.threshold:+g}{ended}")
        with head:
            evidence(alert)
        if alert.status == "firing":
            with buttons:
                if not alert.acked_at and auth.may("acknowledge"):
                    acknowledge_button(alert)
                if auth.may("silence"):
                    silence_form(alert)


def pending_list(items: list[alert_queries.PendingView]) -> None:
    if not items:
        st.info("No rule is pending: nothing is about to fire.")
    for item in items:
        with st.container(border=True):
            st.markdown(f"{SEVERITY_ICONS.get(item.severity, '●')} **{escape_markdown(item.rule_name)}** on "
                        f"**{escape_markdown(item.entity)}** · pending since {utc(item.since)} ({ago(item.since)})")
            st.caption(f"{item.metric} {signed(item.last_value)} {item.comparator} {item.threshold:+g}; fires after "
                       f"holding {duration_text(item.pending_s)} with at least {item.min_stories} stories per window"
                       f" · last evaluated {ago(item.last_evaluated_at)}")


def silences_list() -> None:
    active = load(alert_queries.silences)
    if not active:
        return
    st.subheader("Active silences")
    for item in active:
        reason = f" · {escape_markdown(item.reason)}" if item.reason else ""
        st.markdown(f"- #{item.id} · rule {escape_markdown(item.rule_name or 'any')} · entity "
                    f"{escape_markdown(item.entity or 'any')} · until {utc(item.until)} · by "
                    f"{escape_markdown(item.created_by)}{reason}")


def render() -> None:
    current = settings()
    st.title("Alerts")

    refused = auth.why_not("acknowledge")
    if refused is not None:
        st.caption(refused)

    @st.fragment(run_every=current.dashboard_refresh_s)
    def live() -> None:
        auth.guard_fragment()
        firing = load(alert_queries.alerts, "firing", RESOLVED_HOURS, LIMIT)
        waiting = load(alert_queries.pending, LIMIT)
        resolved = load(alert_queries.alerts, "resolved", RESOLVED_HOURS, LIMIT)
        tabs = st.tabs([f"Firing ({len(firing)})", f"Pending ({len(waiting)})",
                        f"Resolved, last {RESOLVED_HOURS:g} h ({len(resolved)})"])
        with tabs[0]:
            if not firing:
                st.success("No alert is firing.")
            for alert in firing:
                alert_card(alert)
        with tabs[1]:
            pending_list(waiting)
        with tabs[2]:
            if not resolved:
                st.info("No alert resolved in this period.")
            for alert in resolved:
                alert_card(alert)
        silences_list()

    live()
    st.divider()
    rule_editor.editor()


render()
