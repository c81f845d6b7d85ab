"""The alert rule editor: the same fields, duration syntax and validation as ``finpulse alerts add/update``.

Input goes through ``monitor.alerts.rules.validate_rule`` (``AlertRuleIn``) and is stored with ``add_rule`` /
``update_rule`` / ``delete_rule``, the functions behind the CLI, so both accept and refuse exactly the same rules.
Only admins see the editor; the write itself (:mod:`dashboards.actions`) checks the role again and is audited.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from dashboards import actions, auth, state
from dashboards.queries import alerts as alert_queries
from dashboards.state import load
from monitor.alerts.durations import duration_text, parse_duration
from monitor.core.errors import FinpulseError
from schemas.alerts import LEGACY_METRICS, METRIC_RANGES, METRICS

log = logging.getLogger(__name__)

NEW = "New rule"
NOTICE_KEY = "rules_notice"
COMPARATORS = ("<", "<=", ">", ">=")
SEVERITIES = ("info", "warning", "critical")
NEW_RULE: dict[str, Any] = {
    "id": None, "name": "", "entity": "*", "metric": "mean_sentiment", "comparator": "<", "threshold": -0.4,
    "recovery_threshold": None, "window_s": 900, "pending_s": 0, "repeat_interval_s": 14_400, "min_stories": 3,
    "no_data_windows": 2, "severity": "warning", "channels": [], "enabled": True, "description": None,
}
# What each metric means, in the words of someone setting a threshold (README, "Alert statistics").
METRIC_HELP: dict[str, str] = {
    "volume_surprise": "how unlikely this many stories are for this entity: 6 means p < 1e-6",
    "sentiment_z": "how many standard errors the window's mean sentiment is from the entity's normal",
    "sentiment_shrunk": "the window's mean sentiment pulled toward the entity's normal when there are few stories",
    "mean_sentiment": "the window's mean sentiment score, -1 (negative) to +1 (positive)",
    "negative_share": "the share of the window's stories that are negative, 0 to 1",
    "count": "the number of stories in the window",
    "zscore": "the most extreme bucket's z-score against the baseline, ignoring how many stories it holds",
    "volume_ratio": "the most extreme bucket's story count over the baseline's",
    "ewma_score": "the most extreme bucket's smoothed (EWMA) sentiment, -1 to +1",
}


def _range_text(metric: str) -> str:
    low, high = METRIC_RANGES[metric]
    if low == -high:  # unbounded both ways (sentiment_z, zscore)
        return "any number"
    return f"{low:g} to {high:g}".replace("inf", "∞")


def metric_help() -> str:
    """The Metric field's help: one line per metric with its meaning and its valid thresholds."""
    lines = [f"- **{metric}**{' (legacy, per bucket)' if metric in LEGACY_METRICS else ''}: "
             f"{METRIC_HELP[metric]}; thresholds {_range_text(metric)}" for metric in METRICS]
    return "\n".join(lines)


def _number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def form_fields(rule: dict[str, Any]) -> dict[str, Any]:
    """The form, pre-filled from ``rule``; returns the raw inputs (text, as a user typed them)."""
    left, middle, right = st.columns(3)
    raw: dict[str, Any] = {
        "name": left.text_input("Name", value=rule["name"], placeholder="aapl-negative"),
        "entity": middle.text_input("Entity", value=rule["entity"],
                                    help="'*' (market), a ticker (AAPL), TYPE:name (ORG:apple inc) or TYPE:*."),
        "severity": right.selectbox("Severity", SEVERITIES, index=SEVERITIES.index(rule["severity"])),
        "metric": left.selectbox("Metric", METRICS, index=METRICS.index(rule["metric"]), help=metric_help()),
        "comparator": middle.selectbox("Comparator", COMPARATORS, index=COMPARATORS.index(rule["comparator"])),
        "threshold": right.text_input("Threshold", value=_number_text(rule["threshold"])),
        "recovery_threshold": left.text_input("Recovery threshold (optional)",
                                              value=_number_text(rule["recovery_threshold"]),
                                              help="Resolve only once the metric is back past this (hysteresis)."),
        "window_s": middle.text_input("Window", value=duration_text(rule["window_s"]), help="90s, 15m, 1h, 1d"),
        "pending_s": right.text_input("Must hold for", value=duration_text(rule["pending_s"])),
        "min_stories": left.text_input("Minimum stories", value=str(rule["min_stories"]),
                                       help="A window with fewer stories is 'no data': the rule cannot fire on it, "
                                            "and a firing alert starts counting no-data windows."),
        "no_data_windows": middle.text_input(
            "No-data windows before resolving", value=str(rule["no_data_windows"]),
            help="A firing alert whose windows lack the minimum stories resolves only after this many windows "
                 "(0 = at once), so a quiet entity does not flap."),
        "repeat_interval_s": right.text_input("Remind every (0 = never)",
                                              value=duration_text(rule["repeat_interval_s"])),
        "channels": left.text_input("Channels", value=", ".join(rule["channels"]), help="Comma separated."),
        "description": middle.text_input("Description", value=rule["description"] or ""),
    }
    raw["enabled"] = st.checkbox("Enabled", value=rule["enabled"])
    return raw


def to_rule_data(raw: dict[str, Any]) -> dict[str, Any]:
    """Form text -> the dict ``validate_rule`` takes; durations parsed as the CLI parses them."""
    data = dict(raw)
    for field in ("window_s", "pending_s", "repeat_interval_s"):
        data[field] = parse_duration(str(raw[field]), field)
    data["recovery_threshold"] = str(raw["recovery_threshold"]).strip() or None
    data["threshold"] = str(raw["threshold"]).strip()
    data["description"] = str(raw["description"]).strip() or None
    for field in ("min_stories", "no_data_windows"):  # text, so AlertRuleIn words the error as the CLI's
        data[field] = str(raw[field]).strip()
    return data


def _done(notice: str) -> None:
    state.invalidate()
    st.session_state[NOTICE_KEY] = notice
    st.rerun()


def rules_table(existing: list[dict[str, Any]]) -> None:
    st.subheader("Rules")
    if not existing:
        st.info("No alert rule yet. Add one below or with `finpulse alerts add`.")
        return
    st.dataframe(
        [{"name": r["name"], "enabled": r["enabled"], "severity": r["severity"], "entity": r["entity"],
          "condition": f"{r['metric']} {r['comparator']} {r['threshold']:g}",
          "recovery": _number_text(r["recovery_threshold"]), "window": duration_text(r["window_s"]),
          "hold": duration_text(r["pending_s"]), "min stories": r["min_stories"],
          "no-data windows": r["no_data_windows"], "remind": duration_text(r["repeat_interval_s"]),
          "channels": ", ".join(r["channels"])} for r in existing],
        hide_index=True, width="stretch")


def editor() -> None:
    existing = load(alert_queries.rules)
    rules_table(existing)
    st.subheader("Rule editor")
    refused = auth.why_not("edit_rules")
    if refused is not None:
        st.caption(refused)
        return
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice)
    by_name = {rule["name"]: rule for rule in existing}
    choice = st.selectbox("Rule to edit", [NEW, *by_name], key="rule_choice")
    rule = by_name.get(choice or NEW, NEW_RULE)
    with st.form(f"rule_form_{rule['id'] or 'new'}", enter_to_submit=True):
        raw = form_fields(rule)
        submitted = st.form_submit_button("Save rule", type="primary")
    if submitted:
        try:
            message = actions.save_rule(rule["id"], to_rule_data(raw))
        except FinpulseError as error:  # a refused rule (ConfigError) or role (PermissionDenied)
            st.error(str(error))
        else:
            _done(message)
    if rule["id"] is not None:
        with st.form(f"rule_delete_{rule['id']}", border=False):
            confirm = st.checkbox(f"Delete rule {rule['name']} (its past alerts stay)")
            if st.form_submit_button("Delete rule") and confirm:
                try:
                    message = actions.delete_rule(int(rule["id"]), rule["name"])
                except FinpulseError as error:
                    st.error(str(error))
                else:
                    _done(message)
