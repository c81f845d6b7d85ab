"""Models: the registry with each version's metrics and gate decision; promote and roll back (password only)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import auth, state
from dashboards.queries import training as training_queries
from dashboards.state import load, settings
from monitor.core.errors import FinpulseError
from monitor.lifecycle import registry

log = logging.getLogger(__name__)

STATUS_ICONS = {"champion": "★ champion", "candidate": "candidate", "retired": "retired"}
NOTICE_KEY = "models_notice"
TABLE_METRICS = ("macro_f1", "f1", "accuracy", "ece", "best_score")
MAX_METRIC_COLUMNS = 8


def gate_summary(gate: dict[str, Any] | None) -> str:
    """One phrase for the table: the gate's decision (and reason) whatever the trainer named the keys."""
    if not gate:
        return "-"
    decision = next((gate[key] for key in ("decision", "passed", "accepted", "promote") if key in gate), None)
    if isinstance(decision, bool):
        decision = "pass" if decision else "fail"
    reason = gate.get("reason")
    return " — ".join(str(part) for part in (decision, reason) if part is not None) or "see details"


def int8_summary(metrics: dict[str, Any]) -> str:
    """Whether the version serves int8 on ONNX Runtime, and why not (the int8 gate's decision at training)."""
    gate = (metrics.get("onnx") or {}).get("int8_gate")
    if not gate:
        return "no ONNX export yet (fp32 is exported on first ONNX load)"
    return ("int8 served — " if gate.get("passed") else "fp32 served — ") + str(gate.get("reason", ""))


def _numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar metrics, nested dicts flattened to ``a.b`` keys (the table shows numbers only)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The few numbers worth a table column: macro-F1 / F1 / accuracy / ECE per task and the selection score
    (``validation.sentiment.macro_f1`` -> ``sentiment.macro_f1``); per-class details stay in the expander."""
    out = {}
    for key, value in _numbers(metrics).items():
        parts = key.removeprefix("validation.").split(".")
        if len(parts) <= 2 and parts[-1] in TABLE_METRICS:
            out[".".join(parts)] = round(value, 4)
    return dict(list(out.items())[:MAX_METRIC_COLUMNS])


def registry_table(versions: list[dict[str, Any]]) -> None:
    rows = []
    for version in versions:
        row: dict[str, Any] = {"version": version["version"],
                               "status": STATUS_ICONS.get(version["status"], version["status"])}
        row.update(headline_metrics(version["metrics"] or {}))
        row.update({"gate": gate_summary(version["gate"]), "ONNX": int8_summary(version["metrics"] or {}),
                    "labels up to": version["trained_until_label_id"],
                    "parent": version["parent_version"], "created (UTC)": version["created_at"],
                    "promoted (UTC)": version["promoted_at"]})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in ("created (UTC)", "promoted (UTC)"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_localize(None)
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "created (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "promoted (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "labels up to": st.column_config.NumberColumn(format="%d"),
    })


def details(versions: list[dict[str, Any]]) -> None:
    st.subheader("Details")
    for version in versions:
        title = f"{version['version']} · {version['status']} · gate: {gate_summary(version['gate'])}"
        with st.expander(title):
            st.caption(f"Base model {version['base_model']} · path {version['path']}")
            left, middle, right = st.columns(3)
            left.markdown("**Metrics**")
            left.json(version["metrics"] or {}, expanded=True)
            middle.markdown("**Gate decision**")
            middle.json(version["gate"] or {}, expanded=True)
            right.markdown("**Training arguments**")
            right.json(version["train_args"] or {}, expanded=False)
            if version["notes"]:
                st.caption(version["notes"])


def retraining_and_drift() -> None:
    """The newest scheduled/manual runs (with why they skipped or what the gate said) and drift checks."""
    st.subheader("Retraining runs and drift checks")
    runs, reports = load(training_queries.job_runs), load(training_queries.drift_reports)
    if not runs and not reports:
        st.caption("No retraining or drift check has run yet (`finpulse retrain`, `finpulse scheduler`).")
        return
    if runs:
        st.dataframe(pd.DataFrame(runs)[["started_at", "job", "trigger", "status", "reason", "slot", "owner"]],
                     hide_index=True, width="stretch")
    if reports:
        columns = ["created_at", "model_version", "news_count", "label_js", "confidence_js", "threshold",
                   "drifted", "note"]
        st.dataframe(pd.DataFrame(reports)[columns], hide_index=True, width="stretch")


def _run_change(description: str, change: Any) -> None:
    try:
        row = change()
    except FinpulseError as error:
        st.error(str(error))
        return
    log.info("dashboard: %s -> champion %s", description, row.version)
    state.invalidate()
    st.session_state[NOTICE_KEY] = f"{description}: {row.version} is now champion."
    st.rerun()


def actions(versions: list[dict[str, Any]]) -> None:
    st.subheader("Promote or roll back")
    if not auth.can_change(settings()):
        st.warning(auth.refuse_change_message())
        return
    st.caption("The consumer switches to the new champion at its next registry poll.")
    others = [v["version"] for v in versions if v["status"] != "champion"]
    left, right = st.columns(2)
    with left, st.form("promote"):
        chosen = st.selectbox("Version to promote", others, index=None, placeholder="choose a version")
        confirmed = st.checkbox("Serve this version instead of the current champion")
        promote = st.form_submit_button("Promote", type="primary")
    with right, st.form("rollback"):
        st.write("Retire the champion and serve the previous champion again.")
        confirmed_rollback = st.checkbox("Roll back the champion")
        rollback = st.form_submit_button("Roll back")
    if promote:
        if not chosen or not confirmed:
            st.error("Choose a version and tick the confirmation to promote.")
        else:
            _run_change(f"Promoted {chosen}", lambda: registry.promote(state.engine(), chosen))
    if rollback:
        if not confirmed_rollback:
            st.error("Tick the confirmation to roll back.")
        else:
            _run_change("Rolled back", lambda: registry.rollback(state.engine()))


def render() -> None:
    current = settings()
    st.title("Models")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice)

    @st.fragment(run_every=current.dashboard_refresh_s)
    def live() -> None:
        versions = load(training_queries.model_versions)
        if not versions:
            st.info("No model is registered yet. Train one with `finpulse train`.")
            return
        registry_table(versions)

    live()
    versions = load(training_queries.model_versions)
    if versions:
        details(versions)
        actions(versions)
        retraining_and_drift()


render()
