"""Models: the registry with each version's metrics, test-set numbers, gate decision, approval and refusals; the
version each live consumer serves; candidates awaiting approval; approve, promote and roll back (admins only, in
:mod:`dashboards.model_actions`; the model is test-loaded first and a broken one refused)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import auth, model_actions
from dashboards.model_actions import NOTICE_KEY
from dashboards.model_tests import heldout_summary, heldout_table
from dashboards.queries import training as training_queries
from dashboards.state import load, settings

log = logging.getLogger(__name__)

STATUS_ICONS = {"champion": "★ champion", "candidate": "candidate", "retired": "retired"}
TABLE_METRICS = ("macro_f1", "f1", "accuracy", "ece", "best_score")
MAX_METRIC_COLUMNS = 8
STALE_AFTER_S = 60.0  # a consumer silent for longer (and 3 stats intervals) is not listed as serving


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


def _approval(version: dict[str, Any]) -> str:
    """Who approved the version and when (four eyes), or that it waits for an admin."""
    if version.get("approved_by"):
        when = version.get("approved_at")
        return f"{version['approved_by']} at {when:%Y-%m-%d %H:%M} UTC" if when else str(version["approved_by"])
    return "awaiting approval" if version.get("awaiting_approval") else ""


def registry_table(versions: list[dict[str, Any]]) -> None:
    rows = []
    for version in versions:
        row: dict[str, Any] = {"version": version["version"],
                               "status": STATUS_ICONS.get(version["status"], version["status"])}
        row.update(headline_metrics(version["metrics"] or {}))
        row.update({"test sets": heldout_summary(version["metrics"]),
                    "gate": gate_summary(version["gate"]), "ONNX": int8_summary(version["metrics"] or {}),
                    "labels up to": version["trained_until_label_id"],
                    "parent": version["parent_version"], "created (UTC)": version["created_at"],
                    "approved by": _approval(version),
                    "promoted (UTC)": version["promoted_at"], "refused (UTC)": version["refused_at"],
                    "refused because": version["refused_reason"] or ""})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in ("created (UTC)", "promoted (UTC)", "refused (UTC)"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_localize(None)
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "created (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "promoted (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "refused (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "labels up to": st.column_config.NumberColumn(format="%d"),
    })


def serving(versions: list[dict[str, Any]], consumers: list[dict[str, Any]]) -> None:
    """What the consumers actually serve, and a warning when the champion is refused (they serve the last good)."""
    champion = next((v for v in versions if v["status"] == "champion"), None)
    if champion is not None and champion["refused_at"] is not None:
        when = f"{champion['refused_at']:%Y-%m-%d %H:%M}"
        st.warning(f"Champion {champion['version']} was refused by a consumer at {when} UTC: "
                   f"{champion['refused_reason']}. Consumers serve the last good version instead. Promote a working "
                   "version, or fix this one and promote it again.")
    st.subheader("Serving now")
    if not consumers:
        st.caption("No consumer has reported in the last minutes (`finpulse consume`).")
        return
    frame = pd.DataFrame(consumers)[["member", "group_id", "topic", "model_version", "status", "detail",
                                     "updated_at"]]
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True).dt.tz_localize(None)
    st.dataframe(frame.rename(columns={"model_version": "serves", "updated_at": "reported (UTC)"}),
                 hide_index=True, width="stretch",
                 column_config={"reported (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    others = sorted({str(c["model_version"]) for c in consumers if c["model_version"]} -
                    ({champion["version"]} if champion else set()))
    if champion is not None and others:
        st.caption(f"Some consumers serve {', '.join(others)}, not the champion {champion['version']}: they switch "
                   "within a poll interval (FINPULSE_MODEL_POLL_INTERVAL_S), or the champion was refused.")


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
            tests = heldout_table(version["metrics"])
            if tests is not None:
                st.markdown("**Test sets** (held out from training, scored with the saved model)")
                st.dataframe(tests, hide_index=True, width="stretch")
            if version["refused_at"] is not None:
                st.error(f"Refused at {version['refused_at']:%Y-%m-%d %H:%M:%S} UTC: {version['refused_reason']}")
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


def render() -> None:
    current = settings()
    st.title("Models")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice)

    @st.fragment(run_every=current.dashboard_refresh_s)
    def live() -> None:
        auth.guard_fragment()
        versions = load(training_queries.model_versions)
        if not versions:
            st.info("No model is registered yet. Train one with `finpulse train`.")
            return
        registry_table(versions)
        serving(versions, load(training_queries.serving_consumers,
                               max(STALE_AFTER_S, 3 * current.stats_interval_s)))

    live()
    versions = load(training_queries.model_versions)
    if versions:
        model_actions.awaiting(versions)
        details(versions)
        model_actions.promote_and_roll_back(versions)
        retraining_and_drift()


render()
