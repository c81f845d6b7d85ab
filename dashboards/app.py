"""Entry point of the finpulse dashboard (``finpulse dashboard`` runs ``streamlit run`` on this file).

The password gate runs first on every rerun; until it passes, navigation holds only the login page, so no page
script (and no query) runs for a visitor who has not logged in.
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
    ("pages/overview.py", "Overview", ":material/monitoring:"),
    ("pages/entity.py", "Entity", ":material/domain:"),
    ("pages/alerts.py", "Alerts", ":material/notifications_active:"),
    ("pages/labelling.py", "Labelling", ":material/label:"),
    ("pages/models.py", "Models", ":material/model_training:"),
]


def main() -> None:
    st.set_page_config(page_title="finpulse", page_icon=":material/monitoring:", layout="wide")
    current = settings()
    configure_logging()
    if not auth.can_view(current):
        st.navigation([st.Page(auth.login_page, title="Log in", icon=":material/lock:")], position="hidden").run()
        return
    pages = [st.Page(HERE / path, title=title, icon=icon, default=index == 0)
             for index, (path, title, icon) in enumerate(PAGES)]
    page = st.navigation(pages)
    auth.sidebar(current)
    with st.sidebar:
        st.caption(f"Times are UTC. Refresh every {current.dashboard_refresh_s:g} s.")
    page.run()


main()
