"""The dashboard's database reads, one module per area: ``trends`` (overview and entity pages), ``consumers``
(the lag tile and the consumers' health), ``alerts``, ``training`` (labelling queue and model registry). Plain
functions of an engine, testable without Streamlit.

May import: ``monitor.lifecycle`` and everything below it, ``schemas``.
"""
