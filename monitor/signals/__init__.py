"""Per-entity risk signals: near-duplicate marking, time buckets of sentiment and volume, and their formulas.

May import: ``monitor.core``, ``schemas``. The stream's sink calls :class:`monitor.signals.buckets.SignalWriter`
inside its transaction.
"""
