"""The model's life after training: the registry (versions, champion, promotion, rollback), registering a trained
version, retraining on analysts' labels with its promotion gate, drift checks, and the scheduler with its database
lock and run log.

May import: ``monitor.stream`` and everything below it, ``finetune``, ``schemas``.
"""
