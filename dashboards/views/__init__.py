"""Page scripts run by st.navigation (see dashboards/app.py), one per page.

Not named ``pages``: Streamlit treats a ``pages/`` folder next to the main script as a version-1 multipage app and
then runs a page's script directly when its URL is asked for, without app.py, so without the login.

May import: ``dashboards`` (its helpers and ``queries``), ``monitor.lifecycle`` and everything below it.
"""
