"""Page scripts run by st.navigation (see dashboards/app.py)."""
