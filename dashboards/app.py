"""Entry point of the finpulse dashboard (``finpulse dashboard`` runs ``streamlit run`` on this file).

The login runs first on every rerun (and ends an idle or too old session); until it passes, navigation holds only
the login page, so no page script (and no query) runs for a visitor who has not logged in. With auth disabled every
page is read-only. The Audit page is listed for admins only (and checks the role itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from dashboards import auth
from dashboards.state import configure_logging, settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PAGES = [
    ("views/overview.py", "Overview", ":material/monitoring:"),
    ("views/entity.py", "Entity", ":material/domain:"),
    ("views/alerts.py", "Alerts", ":material/notifications_active:"),
    ("views/labelling.py", "Labelling", ":material/label:"),
    ("views/models.py", "Models", ":material/model_training:"),
]
ADMIN_PAGES = [("views/audit.py", "Audit", ":material/history:")]


def main() -> None:
    st.set_page_config(page_title="finpulse", page_icon=":material/monitoring:", layout="wide")
    current = settings()
    configure_logging()
    signed_in = auth.refresh(current)
    try:
        if auth.mode(current) == "login" and signed_in is None:
            st.navigation([st.Page(auth.login_page, title="Log in", icon=":material/lock:")], position="hidden").run()
            return
        listed = PAGES + (ADMIN_PAGES if auth.is_admin(signed_in) else [])
        pages = [st.Page(HERE / path, title=title, icon=icon, default=index == 0)
                 for index, (path, title, icon) in enumerate(listed)]
        page = st.navigation(pages)
        auth.sidebar(current)
        with st.sidebar:
            st.caption(f"Times are UTC. Refresh every {current.dashboard_refresh_s:g} s.")
        page.run()
    finally:  # also when the page stops or reruns (Streamlit raises to do so)
        auth.end_full_run()

main()
