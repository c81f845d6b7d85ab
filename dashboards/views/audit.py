"""Audit (admins only): who changed what and when, from the dashboard and the CLI; filter, diff, download."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import auth
from dashboards.queries import audit as audit_queries
from dashboards.state import load

LIMIT = 1000
ALL = "(all)"


def render() -> None:
    st.title("Audit")
    if not auth.is_admin(auth.principal()):  # navigation lists this page for admins only; this holds anyway
        st.error("The audit trail is for admins.")
        st.stop()
    rows = load(audit_queries.events, LIMIT)
    if not rows:
        st.info("No change has been recorded yet.")
        return
    left, right = st.columns(2)
    actor = left.selectbox("Actor", [ALL, *sorted({r["actor"] for r in rows})], key="audit_actor")
    action = right.selectbox("Action", [ALL, *sorted({r["action"] for r in rows})], key="audit_action")
    shown = [r for r in rows if actor in (ALL, r["actor"]) and action in (ALL, r["action"])]
    st.caption(f"{len(shown)} of the newest {len(rows)} events, newest first. Times are UTC. The table is "
               "append-only: the database refuses to change or delete a row.")
    frame = pd.DataFrame([{"id": r["id"], "at (UTC)": r["at"], "actor": r["actor"], "role": r["role"],
                           "source": r["source"], "action": r["action"], "target": r["target"],
                           "change": "; ".join(audit_queries.changes(r["before"], r["after"]))} for r in shown])
    if not frame.empty:
        frame["at (UTC)"] = pd.to_datetime(frame["at (UTC)"], utc=True).dt.tz_localize(None)
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"at (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download (jsonl)", audit_queries.export(shown), file_name=_file_name(),
                       mime="application/x-ndjson", key="audit_download")
    if shown:
        details(shown)


def _title(event: dict[str, Any]) -> str:
    return f"#{event['id']} {event['action']} {event['target']} by {event['actor']}"


def details(shown: list[dict[str, Any]]) -> None:
    """One event's diff, and its before and after in full."""
    st.subheader("Event")
    by_id = {int(r["id"]): r for r in shown}
    chosen = st.selectbox("Event", list(by_id), key="audit_event", format_func=lambda i: _title(by_id[i]))
    event = by_id[chosen if chosen is not None else next(iter(by_id))]
    before, after = event["before"], event["after"]
    diff = audit_queries.changes(before, after)
    st.code("\n".join(diff) or "(no field changed)", language=None)
    left, right = st.columns(2)
    left.markdown("**Before**")
    left.json(before or {}, expanded=True)
    right.markdown("**After**")
    right.json(after or {}, expanded=True)


def _file_name() -> str:
    return f"finpulse-audit-{datetime.now().astimezone():%Y%m%d-%H%M%S}.jsonl"


render()
