"""The Streamlit dashboard: ``app`` (navigation and the login gate), ``auth`` (accounts, sessions), ``actions``
(every write, checked by role), ``state`` (cached engine and settings), ``views/`` (one script per page; its
docstring says why not ``pages/``), ``queries/`` (database reads), and page helpers (charts, formatting, labels,
rule editor, model actions).

May import: ``monitor.lifecycle`` and everything below it; independent of ``monitor.cli``.
"""
