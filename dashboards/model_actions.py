"""The Models page's controls: approve a gated candidate (four eyes), promote and roll back; admins only.

Each write goes through :mod:`dashboards.actions` (the registry checks the role again and audits it); the model is
test-loaded first and a broken one refused with one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import actions, auth, state
from monitor.core.errors import FinpulseError
from schemas.registry import ModelVersion

log = logging.getLogger(__name__)

NOTICE_KEY = "models_notice"


def run_change(description: str, change: Callable[[], ModelVersion]) -> None:
    try:
        with st.spinner("Test-loading the model as the consumers serve it..."):
            row = change()
    except FinpulseError as error:  # a refused model (ModelLoadError, ConfigError) or role (PermissionDenied)
        st.error(str(error))
        return
    log.info("dashboard: %s -> champion %s", description, row.version)
    state.invalidate()
    st.session_state[NOTICE_KEY] = f"{description}: {row.version} is now champion."
    st.rerun()


def awaiting(versions: list[dict[str, Any]]) -> None:
    """Candidates that passed the gate and wait for an admin (FINPULSE_RETRAIN_PROMOTION=approve)."""
    waiting = [v for v in versions if v.get("awaiting_approval")]
    if not waiting:
        return
    st.subheader(f"Awaiting approval ({len(waiting)})")
    st.caption("These candidates passed the promotion gate and are not served until an admin approves one; the "
               "last labeller of a candidate's new data cannot approve it (four eyes).")
    st.dataframe(pd.DataFrame([{"version": v["version"], "labels up to": v["trained_until_label_id"],
                                "created (UTC)": v["created_at"], "gate": str(v["gate"] or "")} for v in waiting]),
                 hide_index=True, width="stretch")
    refused = auth.why_not("approve")
    if refused is not None:
        st.caption(refused)
        return
    with st.form("approve"):
        chosen = st.selectbox("Version to approve", [v["version"] for v in waiting], index=None,
                              placeholder="choose a version")
        confirmed = st.checkbox("I checked its gate decision and approve serving it")
        approve = st.form_submit_button("Approve", type="primary")
    if approve:
        if not chosen or not confirmed:
            st.error("Choose a version and tick the confirmation to approve.")
        else:
            run_change(f"Approved {chosen}", lambda: actions.approve(chosen))


def promote_and_roll_back(versions: list[dict[str, Any]]) -> None:
    st.subheader("Promote or roll back")
    refused = auth.why_not("promote")
    if refused is not None:
        st.caption(refused)
        return
    st.caption("The model is test-loaded first and refused if it does not load or score; the consumers switch to "
               "the new champion at their next registry poll.")
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
            run_change(f"Promoted {chosen}", lambda: actions.promote(chosen))
    if rollback:
        if not confirmed_rollback:
            st.error("Tick the confirmation to roll back.")
        else:
            run_change("Rolled back", actions.rollback)
