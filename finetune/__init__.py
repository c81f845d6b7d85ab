"""The training library for finpulse's multi-task model (document sentiment, NER, entity sentiment; one encoder
pass). It knows nothing of Kafka, alerts or the registry.

Modules: ``args`` (train/eval dataclasses with help text), ``data/`` (sources -> examples), ``examples`` (the
example and span types), ``features`` (tokens and spans), ``markup`` (tweet markup rules), ``model`` (encoder +
heads), ``base_model`` (packaged encoders), ``device`` (device, precision, threads), ``train``, ``evaluate`` and
``metrics``, ``calibrate``, ``export`` (versioned directory and model card), ``model_dir`` (the directory contract),
``bench`` (bf16 vs fp32 training speed).

May import: ``monitor.core`` (errors, settings defaults, the database for the ``db`` source) and ``schemas``.
"""
