"""What turns text into predictions at serving time: the scorer and its backends (finpulse's multi-task model, any
transformers sentiment classifier), the cashtag rule, which model serves (the registry's champion or a fixed
directory) and the hot swap to a newly promoted champion.

May import: ``finetune`` (model, features, device, model directory contract), ``monitor.core``, ``schemas``.
"""
