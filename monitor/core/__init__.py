"""Foundations every other room uses: settings (one pydantic-settings class), errors, the database engine and
migrations, logging.

May import: ``schemas`` only. Everything else in finpulse may import it.
"""
