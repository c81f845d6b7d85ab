"""Alerts: rule validation and storage, the per-entity state machine, window metrics, the evaluator that runs after
each committed batch, and the notification outbox with its delivery thread.

May import: ``monitor.signals``, ``monitor.scoring``, ``finetune``, ``monitor.core``, ``schemas``. A new alert
channel goes in :mod:`monitor.alerts.notify`.
"""
