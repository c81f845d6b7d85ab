"""The Streamlit dashboard: ``app`` (navigation), ``auth``, ``state`` (cached engine and settings), ``pages/``
(one script per page), ``queries/`` (database reads), and page helpers (charts, formatting, labels, rule editor).

May import: ``monitor.lifecycle`` and everything below it; independent of ``monitor.cli``.
"""
